"""Channels: the game-facing :class:`Channel` and the paced :class:`ReliableSender`.

aiortc keeps one FIFO for every channel of a connection (``RTCSctpTransport``'s
``_data_channel_queue``, moved to SCTP one message at a time only when its outbound queue is
empty, and sent only while the congestion window has room), so a big reliable message delays
every state datagram queued behind it: under 5% loss and 100 ms RTT, by most of a second.
netplay therefore keeps reliable data out of aiortc's queues: a message (or a piece of it) is
handed over only when SCTP has nothing queued and room in its congestion window, so bytes in
flight stay bounded by the window and a state datagram at most waits for the next ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import wire
from .config import ChannelConfig
from .types import PeerId, Received

if TYPE_CHECKING:
    from .peer import PeerLink

__all__ = ["Channel", "ReliableSender"]

logger = logging.getLogger(__name__)


class ReliableSender:
    """Paced sends on one reliable channel of one :class:`PeerLink`.

    Messages wait here and go to aiortc only while SCTP has room in its congestion window and
    nothing queued (:meth:`PeerLink.reliable_room`); a message bigger than the room is cut into
    FRAGMENT pieces the size of the room (at least ``MIN_PIECE``, at most ``fragment_size``).
    The queue is pumped after every SCTP acknowledgement (:meth:`PeerLink.on_acked`) and, as a
    fallback, every ``PUMP_INTERVAL`` seconds while anything waits.
    """

    PUMP_INTERVAL = 0.02
    MIN_PIECE = 1100

    def __init__(self, link: PeerLink, index: int, fragment_size: int) -> None:
        self.link = link
        self.index = index
        self.fragment_size = fragment_size
        self._queue: deque[tuple[memoryview, int]] = deque()  # (payload, message id)
        self._offset = 0
        self._queued_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        link.on_acked(self._acked)

    def _acked(self) -> None:
        if self._queue:
            self.pump()

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in netplay (not yet handed to aiortc)."""
        return self._queued_bytes

    def send(self, payload: bytes, message_id: int) -> None:
        """Queue one encoded message and send what the pacing allows now."""
        self._queue.append((memoryview(payload), message_id))
        self._queued_bytes += len(payload)
        self.pump()

    def pump(self) -> None:
        """Hand messages (or pieces) to aiortc while SCTP has room."""
        self._timer = None
        link = self.link
        while self._queue:
            room = link.reliable_room(self.index)
            if room <= 0:
                break
            payload, message_id = self._queue[0]
            left = len(payload) - self._offset
            if self._offset == 0 and left <= min(max(room, self.MIN_PIECE), self.fragment_size):
                frame = bytes((wire.MESSAGE,)) + payload
                size = left
            else:
                size = min(left, self.fragment_size, max(room, self.MIN_PIECE))
                frame = wire.fragment(payload, message_id, self._offset, size)
            if not link.send(self.index, frame):
                self.close()
                return
            self._queued_bytes -= size
            self._offset += size
            if self._offset >= len(payload):
                self._queue.popleft()
                self._offset = 0
        if self._queue and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.PUMP_INTERVAL, self.pump)

    def close(self) -> None:
        """Drop everything queued."""
        self._queue.clear()
        self._queued_bytes = 0
        self._offset = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
