"""The event stream of a session: one bounded queue that ``events()``, ``wait_for()`` and
``SyncMesh.poll()`` read.

Events are emitted by the event loop's thread; ``drain()`` may run in any thread (a game
loop). Lifecycle events (joins, leaves, host and lobby changes) are never dropped. Messages
(:class:`~netplay.events.MessageReceived`) are bounded, so a game that reads its messages
some other way (channel queues) or not at all holds bounded memory:

- until the stream is read for the first time, at most :data:`UNREAD_LIMIT` messages wait
  (the oldest go, silently: the game may not use this path at all);
- once it has been read, at most ``max_queued``; beyond that the oldest message goes, with a
  WARNING at the first drop and every 1,000th.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from .errors import ChannelClosed
from .events import Event, MessageReceived

__all__ = ["UNREAD_LIMIT", "EventStream"]

logger = logging.getLogger(__name__)

E = TypeVar("E")

UNREAD_LIMIT = 256
"""Most messages an event stream or a channel queue holds before the game first reads it."""


class EventStream:
    """Queued events with awaitable waits and a thread-safe drain.

    ``is_open()`` tells whether the session is still open (waits end when it closes).
    """

    def __init__(self, max_queued: int, is_open: Callable[[], bool]) -> None:
        self._events: deque[Event] = deque()
        self._max = max_queued
        self._is_open = is_open
        self._lock = threading.Lock()
        self._messages = 0
        self._read = False
        self._wakeup: asyncio.Future[None] | None = None
        self.dropped = 0
        """Messages dropped because the stream held too many unread."""

    def __len__(self) -> int:
        return len(self._events)

    # -- writing (the loop thread) --------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue ``event`` and wake whoever waits."""
        with self._lock:
            if isinstance(event, MessageReceived):
                limit = self._max if self._read else UNREAD_LIMIT
                if self._messages >= limit:
                    self._drop_oldest_message()
                self._messages += 1
            self._events.append(event)
        self.wake()

    def _drop_oldest_message(self) -> None:
        for i, old in enumerate(self._events):
            if isinstance(old, MessageReceived):
                del self._events[i]
                self._messages -= 1
                break
        if self._read:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("%d unread MessageReceived events dropped (read events() / "
                               "poll(), or read messages from channel queues only)",
                               self.dropped)

    def wake(self) -> None:
        """Wake waiters (also when the session closes)."""
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    # -- reading --------------------------------------------------------------------------

    def _pop(self) -> Event | None:
        with self._lock:
            self._read = True
            if not self._events:
                return None
            event = self._events.popleft()
            if isinstance(event, MessageReceived):
                self._messages -= 1
            return event

    def drain(self) -> list[Event]:
        """Every queued event, oldest first; never blocks. Safe from any thread."""
        with self._lock:
            self._read = True
            out = list(self._events)
            self._events.clear()
            self._messages = 0
        return out

    def peek(self, kind: type[E]) -> list[E]:
        """Queued events of type ``kind``, left in the queue."""
        with self._lock:
            return [e for e in self._events if isinstance(e, kind)]

    async def _wait(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._wakeup)

    async def events(self) -> AsyncIterator[Event]:
        """Every event, oldest first, including those that happened before; ends on close."""
        while True:
            while (event := self._pop()) is not None:
                yield event
            if not self._is_open():
                return
            await self._wait()

    async def wait_for(self, kind: type[E], timeout: float | None = 10.0,
                       where: Callable[[E], bool] | None = None) -> E:
        """The first unread event of type ``kind`` (matching ``where``), waiting if needed.

        Other events stay queued. ``TimeoutError`` after ``timeout`` s; ``ChannelClosed`` if
        the session closes meanwhile.
        """
        async with asyncio.timeout(timeout):
            while True:
                with self._lock:
                    self._read = True
                    for i, event in enumerate(self._events):
                        if isinstance(event, kind) and (where is None or where(event)):
                            del self._events[i]
                            if isinstance(event, MessageReceived):
                                self._messages -= 1
                            return event
                if not self._is_open():
                    raise ChannelClosed("the Mesh closed while waiting")
                await self._wait()

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None) -> None:
        """Wait until ``condition()`` holds, checking it whenever an event is emitted.

        ``TimeoutError`` after ``timeout`` s; ``ChannelClosed`` if the session closes.
        """
        async with asyncio.timeout(timeout):
            while not condition():
                if not self._is_open():
                    raise ChannelClosed("the Mesh closed while waiting")
                await self._wait()
