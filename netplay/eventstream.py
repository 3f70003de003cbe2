"""The event stream of a mesh: a queue that ``events()``, ``wait_for()`` and ``poll()`` read.

Lifecycle events are never dropped; when more than ``max_queued`` events wait unread, the
oldest :class:`~netplay.events.MessageReceived` goes first (the message is still in its
channel's queue). A :class:`~netplay.SyncMesh` replaces the queue with a thread-safe sink.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from .errors import ChannelClosed, PeersNotConnected
from .events import Event, MessageReceived
from .types import PeerId

__all__ = ["EventStream"]

E = TypeVar("E")


class EventStream:
    """Mixin: queued events with awaitable waits (the Mesh supplies ``peers`` and status)."""

    def __init__(self, max_queued: int) -> None:
        self._events: deque[Event] = deque()
        self._max_events = max_queued
        self._wakeup: asyncio.Future[None] | None = None
        self._sink: Callable[[Event], None] | None = None

    @property
    def peers(self) -> list[PeerId]:
        raise NotImplementedError

    def _is_open(self) -> bool:
        raise NotImplementedError

    # -- events ---------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._sink is not None:
            self._sink(event)
        else:
            if isinstance(event, MessageReceived) and len(self._events) >= self._max_events:
                self._drop_oldest_message()
            self._events.append(event)
        self._wake()

    def _drop_oldest_message(self) -> None:
        for i, old in enumerate(self._events):
            if isinstance(old, MessageReceived):
                del self._events[i]
                return

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    async def _wait(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._wakeup)

    async def events(self) -> AsyncIterator[Event]:
        """Every event, oldest first, including those that happened before; ends on close."""
        while True:
            while self._events:
                yield self._events.popleft()
            if not self._is_open():
                return
            await self._wait()

    async def wait_for(self, kind: type[E], timeout: float | None = 10.0,
                       where: Callable[[E], bool] | None = None) -> E:
        """The first unread event of type ``kind`` (matching ``where``), waiting if needed.

        Other events stay queued for :meth:`events`. ``TimeoutError`` after ``timeout`` s.
        """
        async with asyncio.timeout(timeout):
            while True:
                for i, event in enumerate(self._events):
                    if isinstance(event, kind) and (where is None or where(event)):
                        del self._events[i]
                        return event
                if not self._is_open():
                    raise ChannelClosed("the Mesh closed while waiting")
                await self._wait()

    async def wait_for_peers(self, n: int, timeout: float | None = 10.0) -> list[PeerId]:
        """Wait until at least ``n`` peers are connected; returns their ids.
        ``PeersNotConnected`` (a ``TimeoutError``) after ``timeout`` seconds, saying which
        peers failed and why."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.peers) < n:
                    if not self._is_open():
                        raise ChannelClosed("the Mesh closed while waiting")
                    await self._wait()
        except TimeoutError:
            raise PeersNotConnected(n, self.peers, self._failures(), timeout) from None
        return self.peers

    def _failures(self) -> dict[PeerId, str]:
        """Peers no link could be made to, and why (the Mesh supplies them)."""
        return {}

