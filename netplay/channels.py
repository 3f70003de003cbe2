"""Channels: the game-facing :class:`Channel` and the paced :class:`ReliableSender`.

aiortc keeps one FIFO for every channel of a connection (``RTCSctpTransport``'s
``_data_channel_queue``, moved to SCTP one message at a time only when its outbound queue is
empty), so a big reliable message delays every state datagram queued behind it. netplay cuts
reliable messages into ``fragment_size`` pieces and hands a piece to aiortc only while that
channel's ``bufferedAmount`` is at most ``reliable_buffer_limit``; the rest waits here and is
pumped on aiortc's ``bufferedamountlow`` event. Bytes in flight stay bounded and state
datagrams keep flowing beside a multi-megabyte transfer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import ChannelConfig
from .types import PeerId, Received

if TYPE_CHECKING:
    from .peer import PeerLink

__all__ = ["Channel", "ReliableSender"]

logger = logging.getLogger(__name__)


class ReliableSender:
    """Queued, paced frames for one reliable channel of one :class:`PeerLink`."""

    def __init__(self, link: PeerLink, index: int, limit: int) -> None:
        self.link = link
        self.index = index
        self.limit = limit
        self._frames: deque[bytes] = deque()
        self._queued_bytes = 0
        link.on_buffered_low(index, limit, self.pump)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in netplay (not yet handed to aiortc)."""
        return self._queued_bytes

    def send(self, frames: list[bytes]) -> None:
        """Queue ``frames`` (one message) and send what the pacing allows now."""
        self._frames.extend(frames)
        self._queued_bytes += sum(len(f) for f in frames)
        self.pump()

    def pump(self) -> None:
        """Hand frames to aiortc while its buffer for this channel is under the limit."""
        link = self.link
        while self._frames and link.buffered(self.index) <= self.limit:
            frame = self._frames.popleft()
            self._queued_bytes -= len(frame)
            if not link.send(self.index, frame):
                self._frames.clear()
                self._queued_bytes = 0
                return


class Channel:
    """A named data channel of a mesh: ``send`` to peers, ``receive`` what arrived.

    Get one with ``mesh.channel(name)``. ``receive()`` never blocks: it returns every
    ``(peer_id, body)`` received since the last call (``[]`` when none). At most
    ``MeshConfig.max_queued`` messages wait; beyond that the oldest are dropped (WARNING).
    """

    def __init__(self, index: int, config: ChannelConfig, max_queued: int,
                 send: Callable[[Any, PeerId | None], bool]) -> None:
        self.index = index
        self.config = config
        self._send = send
        self._queue: deque[Received] = deque()
        self._max = max_queued
        self.dropped = 0
        """Messages dropped because nobody read them in time."""

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
        out = []
        queue = self._queue
        while queue:  # popleft is atomic: safe while the loop thread appends
            out.append(queue.popleft())
        return out

    def _deliver(self, peer_id: PeerId, body: Any) -> None:
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("channel %r: %d unread messages dropped (call receive())",
                               self.name, self.dropped)
        self._queue.append((peer_id, body))
