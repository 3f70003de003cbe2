"""The game-facing :class:`Channel`: send to peers, receive what arrived.

What travels where is :mod:`netplay.lanes` (reliability) and :mod:`netplay.dataplane`
(datagrams); a Channel only hands sends over and queues what arrived until the game reads it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import ChannelConfig
from .eventstream import UNREAD_LIMIT
from .types import PeerId, Received

__all__ = ["Channel"]

logger = logging.getLogger(__name__)


class Channel:
    """A named data channel of a mesh: ``send`` to peers, ``receive`` what arrived.

    Get one with ``mesh.channel(name)``. ``receive()`` never blocks: it returns every
    ``(peer_id, body)`` received since the last call (``[]`` when none). Until the first
    ``receive()``, at most :data:`~netplay.eventstream.UNREAD_LIMIT` messages wait (the oldest
    go, silently: a game may read messages as events instead, or only ``interpolated()``);
    after it, at most ``MeshConfig.max_queued`` (the oldest go, with a WARNING).
    """

    def __init__(self, index: int, config: ChannelConfig, max_queued: int,
                 send: Callable[[Any, PeerId | None], bool]) -> None:
        self.index = index
        self.config = config
        self._send = send
        self._queue: deque[Received] = deque()
        self._max = max_queued
        self._read = False
        self.dropped = 0
        """Messages dropped because nobody read them in time (after the first read)."""

    @property
    def name(self) -> str:
        """The channel's configured name."""
        return self.config.name

    def __repr__(self) -> str:
        kind = "reliable" if self.config.is_reliable else "unreliable"
        return f"<Channel {self.name!r} id={self.index} {kind}>"

    def send(self, body: Any, to: PeerId | None = None) -> bool:
        """Send ``body`` (any msgpack value) to peer ``to``, or to every connected peer.

        Never blocks. Returns False when no connected peer was addressed.
        """
        return self._send(body, to)

    def receive(self) -> list[Received]:
        """Everything received since the last call, oldest first."""
        self._read = True
        out = []
        queue = self._queue
        while queue:  # popleft is atomic: safe while the loop thread appends
            out.append(queue.popleft())
        return out

    def _deliver(self, peer_id: PeerId, body: Any) -> None:
        """Queue a received message (the event loop's thread)."""
        queue = self._queue
        if len(queue) >= (self._max if self._read else UNREAD_LIMIT):
            try:
                queue.popleft()
            except IndexError:  # the game drained it meanwhile
                pass
            if self._read:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.warning("channel %r: %d unread messages dropped (call receive())",
                                   self.name, self.dropped)
        queue.append((peer_id, body))
