"""Lanes: netplay's own reliable and unreliable messages over the unreliable stream. No I/O.

One :class:`Outbound` and one :class:`Inbound` per remote peer, kept across link rebuilds (so
record ids survive a re-offer and nothing in flight is lost or doubled). Every channel of a
mesh but "state" is a lane (:class:`LaneSpec`): reliable ordered, reliable unordered or
unreliable, with a priority; lane 0 is netplay's control lane.

Sending (the model of Glenn Fiedler's "reliable ordered messages", GNS lanes and QUIC's loss
recovery):

- A message waits in its lane's queue; when a datagram is built (:meth:`Outbound.take`) lanes
  are served by priority, highest first, and a message too big for one datagram is cut into
  pieces. Each record (message or piece) gets the next record id when it is first sent.
- The peer acknowledges record ids in every datagram it sends (cumulative id + bitfield).
- A record is resent when a record sent after it was acknowledged and it has been out for
  the latest RTT plus a reordering allowance (RACK, RFC 8985), or when it has been out for
  the retransmission timeout ``srtt + 4 * rttvar`` (floored at ``min_rto``, a couple of ticks;
  doubled per resend of that record, up to :data:`MAX_RTO`). Never SCTP's 1 s minimum.
- At most ``window`` record ids may be outstanding past the oldest unacknowledged one (the
  receiver's window), which bounds memory on both sides.

Receiving (:class:`Inbound`): duplicates are dropped by record id; pieces are reassembled
(size-checked against ``max_message_size``); an ordered lane delivers by lane sequence number.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._unpack import UnpackLimits
from .errors import ProtocolError
from .wire import (
    MAX_ACK_BYTES,
    MAX_EPOCH,
    Acks,
    Record,
    pack_fragment_record,
    pack_record,
    pack_unreliable_record,
    unpack_body,
)

__all__ = ["BadMessage", "Inbound", "LaneSpec", "Outbound", "RttEstimator", "lane_specs"]

logger = logging.getLogger(__name__)

WINDOW = MAX_ACK_BYTES * 8
"""Record ids a receiver accepts past its cumulative ack (and a sender may have outstanding)."""
MAX_RTO = 1.0
"""Longest wait before a record is resent (after backoff)."""
COPY_RIDE = 1.5
"""A proactive copy due at most this many copy gaps before the next snapshot datagram waits
for it and rides there, instead of a datagram of its own (a game at half the send rate sends
a snapshot every two copy gaps)."""
MAX_IN_FLIGHT = 12 * 1024
"""Bytes of records a sender may have unacknowledged. Well below SCTP's congestion-window
floor (32 KiB, :data:`netplay._aiortc.CWND_FLOOR`; SCTP still counts lost chunks until it
abandons them), so lane data never fills SCTP's shared FIFO window and a snapshot finds
room at once: with a 1 MiB transfer in flight at 50 ms one way
and 5% loss, snapshot staleness p99 fell from 200 ms (64 KiB) to 130 ms, and the transfer
took 9.9 s instead of 8.1 s (raw aiortc: 16.8 s). It also keeps what arrives at a busy
receiver's UDP socket buffer far below Linux's default 208 KiB."""
SMALL_RECORD = 300
"""Whole messages whose record is up to this many bytes (a typical game event) are repeated
proactively (pieces of big messages are not)."""
COPIES = 2
"""Extra copies of a small record, each in a later datagram, until it is acknowledged: a lost
event then costs one datagram interval instead of a round trip (at 10% loss, all three copies
are lost one time in a thousand)."""
RECORD_OVERHEAD = 24
"""Upper bound of a fragment record's bytes besides its piece."""


@dataclass(frozen=True, slots=True)
class LaneSpec:
    """What one lane is: its index, kind and priority (higher goes first)."""

    index: int
    reliable: bool = True
    ordered: bool = True
    priority: int = 0


class RttEstimator:
    """RFC 6298 smoothed RTT and variance, plus the minimum seen (for delay-based pacing)."""

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.latest = 0.0
        self.min_rtt = float("inf")

    def sample(self, rtt: float) -> None:
        """Take one measurement (seconds)."""
        rtt = max(rtt, 1e-6)
        self.latest = rtt
        self.min_rtt = min(self.min_rtt, rtt)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def rto(self, floor: float) -> float:
        """``srtt + 4 * rttvar``, at least ``floor`` (0.2 s before any sample)."""
        if self.srtt is None:
            return max(floor, 0.2)
        return min(max(self.srtt + 4 * self.rttvar, floor), MAX_RTO)


@dataclass(eq=False, slots=True)
class _Message:
    lane: int
    lseq: int
    payload: memoryview
    count: int
    """Pieces (0: sent whole)."""
    next_index: int = 0
    unacked: int = 0
    """Records of this message sent and not yet acknowledged."""


@dataclass(eq=False, slots=True)
class _Sent:
    rid: int
    lane: int
    data: bytes
    message: _Message
    first_sent: float
    last_sent: float
    sends: int = 1
    lost: bool = False
    copies: int = 0
    """Proactive copies sent (not resends: the RTT is still measured from the first send)."""
    next_copy: float = 0.0


@dataclass(slots=True)
class _LaneOut:
    spec: LaneSpec
    queue: deque[_Message] = field(default_factory=deque)
    unreliable: deque[bytes] = field(default_factory=deque)
    next_lseq: int = 0


class Outbound:
    """The sending half of one peer's lanes."""

    def __init__(self, lanes: list[LaneSpec], *, piece_size: int = 1000,
                 min_rto: float = 0.03, window: int = WINDOW, copy_gap: float = 0.015,
                 copies: int = COPIES, rng: random.Random | None = None) -> None:
        self.epoch = (rng or random.SystemRandom()).randrange(1, MAX_EPOCH)
        self.piece_size = piece_size
        self.min_rto = min_rto
        self.window = window
        self.max_in_flight = MAX_IN_FLIGHT
        self.copy_gap = copy_gap
        """Seconds between copies of a small record (about a tick: separate datagrams)."""
        self.copies = copies
        self._copy_queue: deque[_Sent] = deque()
        self.rtt = RttEstimator()
        self._lanes = {spec.index: _LaneOut(spec) for spec in lanes}
        self._levels: list[list[_LaneOut]] = []
        for priority in sorted({s.priority for s in lanes}, reverse=True):
            self._levels.append([lane for lane in self._lanes.values()
                                 if lane.spec.priority == priority])
        self._next_rid = 0
        self._in_flight: dict[int, _Sent] = {}
        self._order: deque[tuple[_Sent, float]] = deque()
        self._lost: deque[_Sent] = deque()
        self._rack_sent = float("-inf")
        self.undelivered = 0
        """Reliable messages accepted and not yet acknowledged whole by the peer."""
        self._pending: dict[int, int] = {}
        self._waiting = 0
        """Messages (reliable and unreliable) queued and not yet sent whole."""
        self.queued_bytes = 0
        """Bytes of reliable messages not yet sent once."""
        self.in_flight_bytes = 0
        self.resent = 0
        """Records sent again (lost or late)."""

    # -- queueing -------------------------------------------------------------------------

    def push(self, lane: int, payload: bytes) -> None:
        """Queue one reliable message (``payload``: its msgpack encoding)."""
        out = self._lanes[lane]
        count = 0 if len(payload) <= self.piece_size else -(-len(payload) // self.piece_size)
        out.queue.append(_Message(lane, out.next_lseq, memoryview(payload), count))
        out.next_lseq += 1
        self.undelivered += 1
        self._waiting += 1
        self._pending[lane] = self._pending.get(lane, 0) + 1
        self.queued_bytes += len(payload)

    def pending(self, lane: int) -> int:
        """Reliable messages of ``lane`` not yet acknowledged whole."""
        return self._pending.get(lane, 0)

    def push_unreliable(self, lane: int, payload: bytes) -> None:
        """Queue one unreliable message for the next datagram."""
        self._lanes[lane].unreliable.append(pack_unreliable_record(lane, payload))
        self._waiting += 1

    def has_new(self) -> bool:
        """True when a message waits to be sent for the first time (window permitting)."""
        if not self._waiting:
            return False
        return self.window_open() or any(lane.unreliable for lane in self._lanes.values())

    def window_open(self) -> bool:
        """True while a new record may be sent: record ids and bytes in flight allow it."""
        oldest = next(iter(self._in_flight), self._next_rid)
        return self._next_rid - oldest < self.window \
            and self.in_flight_bytes < self.max_in_flight

    # -- acknowledgements -----------------------------------------------------------------

    def on_acks(self, acks: Acks, now: float) -> int:
        """Apply the peer's acks; returns the bytes newly acknowledged."""
        if acks.epoch != self.epoch:
            return 0
        in_flight = self._in_flight
        done = 0
        for rid in list(in_flight):  # ordered by rid: stop at cum
            if rid >= acks.cum:
                break
            done += self._acked(in_flight.pop(rid), now)
        for rid in acks.received():
            sent = in_flight.pop(rid, None)
            if sent is not None:
                done += self._acked(sent, now)
        return done

    def _acked(self, sent: _Sent, now: float) -> int:
        if sent.sends == 1:  # a copy that made it may add up to copy_gap: a small bias
            self.rtt.sample(now - sent.first_sent)
        if sent.last_sent > self._rack_sent:
            self._rack_sent = sent.last_sent
        size = len(sent.data)
        self.in_flight_bytes -= size
        message = sent.message
        message.unacked -= 1
        if message.unacked == 0 and message.next_index >= max(message.count, 1):
            self.undelivered -= 1
            self._pending[message.lane] -= 1
        return size

    # -- loss detection -------------------------------------------------------------------

    def _detect_losses(self, now: float) -> None:
        rto = self.rtt.rto(self.min_rto)
        srtt = self.rtt.srtt if self.rtt.srtt is not None else rto
        reorder = max(self.rtt.min_rtt / 4 if self.rtt.min_rtt < 1e9 else 0.0, 0.002)
        rack_wait = max(self.rtt.latest, srtt * 0.5) + reorder
        while (front := self._front()) is not None:
            sent, stamp = front
            age = now - stamp
            rack_lost = stamp < self._rack_sent and age >= rack_wait
            if not (rack_lost or age >= _backoff(rto, sent.sends)):
                break
            self._order.popleft()
            sent.lost = True
            self._lost.append(sent)

    def next_timeout(self, ride: float | None = None) -> float | None:
        """When the next record is due for a resend or a copy (``None``: nothing in flight).

        ``ride``: when the next datagram that goes anyway (a snapshot's) is expected. A copy
        due at most :data:`COPY_RIDE` copy gaps before it waits to ride in it (the copy's
        timer is then ``ride + copy_gap``, for a snapshot that does not come)."""
        copy = self._next_copy()
        if copy is not None and ride is not None and ride <= copy + COPY_RIDE * self.copy_gap:
            copy = ride + self.copy_gap
        resend = self._next_resend()
        if copy is None or resend is None:
            return resend if copy is None else copy
        return min(copy, resend)

    def _front(self) -> tuple[_Sent, float] | None:
        """The earliest-sent live entry of the send order (stale ones are dropped)."""
        order = self._order
        while order:
            sent, stamp = order[0]
            if sent.rid in self._in_flight and stamp == sent.last_sent and not sent.lost:
                return sent, stamp
            order.popleft()
        return None

    def _copy_front(self) -> _Sent | None:
        """The next record due for a proactive copy (finished ones are dropped)."""
        queue = self._copy_queue
        while queue:
            sent = queue[0]
            if sent.rid in self._in_flight and not sent.lost and sent.copies < self.copies:
                return sent
            queue.popleft()
        return None

    def _next_copy(self) -> float | None:
        sent = self._copy_front()
        return None if sent is None else sent.next_copy

    def _next_resend(self) -> float | None:
        front = self._front()
        if front is None:
            return None
        sent, stamp = front
        return stamp + _backoff(self.rtt.rto(self.min_rto), sent.sends)

    def resend_all(self) -> None:
        """A new link: whatever is in flight may have died with the old one; resend it."""
        for sent in self._in_flight.values():
            if not sent.lost:
                sent.lost = True
                self._lost.append(sent)
        self._order.clear()

    # -- building datagrams ---------------------------------------------------------------

    def take(self, now: float, room: int, budget: float) -> list[bytes]:
        """Records for one datagram: at most ``room`` bytes, and reliable records while
        ``budget`` bytes (the pacer's) last. Lanes go by priority, highest first; within a
        lane, unreliable messages, then resends of lost records, then new records."""
        self._detect_losses(now)
        out: list[bytes] = []
        lost_by_lane: dict[int, list[_Sent]] = {}
        while self._lost:
            sent = self._lost.popleft()
            if sent.rid in self._in_flight and sent.lost:
                lost_by_lane.setdefault(sent.lane, []).append(sent)
        for level in self._levels:
            for lane in level:
                while lane.unreliable and (len(lane.unreliable[0]) <= room or not out):
                    record = lane.unreliable.popleft()  # alone in a datagram if it must be
                    self._waiting -= 1
                    out.append(record)
                    room -= len(record)
                for sent in lost_by_lane.pop(lane.spec.index, ()):
                    size = len(sent.data)
                    if size > room or budget <= 0:
                        self._lost.append(sent)
                        continue
                    sent.lost = False
                    sent.sends += 1
                    sent.last_sent = now
                    self._order.append((sent, now))
                    self.resent += 1
                    out.append(sent.data)
                    room -= size
                    budget -= size
                while lane.queue and budget > 0 and self.window_open() \
                        and self.in_flight_bytes < self.max_in_flight:
                    piece = self._next_piece(lane, now, room)
                    if piece is None:
                        break
                    out.append(piece)
                    room -= len(piece)
                    budget -= len(piece)
        for rest in lost_by_lane.values():
            self._lost.extend(rest)
        queue = self._copy_queue
        while budget > 0 and (copy := self._copy_front()) is not None:
            if copy.next_copy > now or len(copy.data) > room:
                break
            queue.popleft()
            out.append(copy.data)
            room -= len(copy.data)
            budget -= len(copy.data)
            copy.copies += 1
            copy.next_copy = now + self.copy_gap
            if copy.copies < self.copies:
                queue.append(copy)
        return out

    def _next_piece(self, lane: _LaneOut, now: float, room: int) -> bytes | None:
        message = lane.queue[0]
        rid = self._next_rid
        if message.count == 0:
            if len(message.payload) + RECORD_OVERHEAD > room:
                return None
            data = pack_record(rid, lane.spec.index, message.lseq, bytes(message.payload))
            message.next_index = 1
            size = len(message.payload)
        else:
            if self.piece_size + RECORD_OVERHEAD > room:
                return None
            index = message.next_index
            piece = message.payload[index * self.piece_size:(index + 1) * self.piece_size]
            data = pack_fragment_record(rid, lane.spec.index, message.lseq, piece, index,
                                        message.count)
            message.next_index += 1
            size = len(piece)
        last = message.next_index >= max(message.count, 1)
        if last:
            lane.queue.popleft()
            self._waiting -= 1
        self.queued_bytes -= size
        self._next_rid = rid + 1
        sent = _Sent(rid, lane.spec.index, data, message, now, now)
        if self.copies and message.count == 0 and len(data) <= SMALL_RECORD:
            sent.next_copy = now + self.copy_gap
            self._copy_queue.append(sent)
        message.unacked += 1
        self._in_flight[rid] = sent
        self._order.append((sent, now))
        self.in_flight_bytes += len(data)
        return data

    @property
    def in_flight(self) -> int:
        """Records sent and not yet acknowledged."""
        return len(self._in_flight)

    def idle(self) -> bool:
        """Nothing queued and nothing unacknowledged."""
        return not self._in_flight and not self._waiting

    def has_lost(self) -> bool:
        """Records known lost wait for a resend."""
        return bool(self._lost)

    def has_due(self, now: float, ride: float | None = None) -> bool:
        """A resend or a copy is due by ``now`` (``ride``: as for :meth:`next_timeout`)."""
        due = self.next_timeout(ride)
        return due is not None and due <= now


def _backoff(rto: float, sends: int) -> float:
    """How long a record sent ``sends`` times waits for its ack before it counts as lost:
    ``rto`` doubled per resend, capped at :data:`MAX_RTO` (or ``rto`` if that is longer)."""
    return min(rto * (1 << min(sends - 1, 6)), max(rto, MAX_RTO))


@dataclass(slots=True)
class _Partial:
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


@dataclass(slots=True)
class _LaneIn:
    spec: LaneSpec
    next_lseq: int = 0
    ready: dict[int, Any] = field(default_factory=dict)
    partial: dict[int, _Partial] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    """Messages found bad while their pieces still arrive (ignored)."""


class Inbound:
    """The receiving half of one peer's lanes."""

    def __init__(self, lanes: list[LaneSpec], limits: UnpackLimits,
                 window: int = WINDOW) -> None:
        self._specs = lanes
        self.limits = limits
        self.window = window
        self.epoch: int | None = None
        self.max_partial_bytes = 2 * limits.max_size + window * 1200
        """Bytes of messages received in part that may be held at once (a bound on what a
        hostile peer can make us keep)."""
        self.duplicates = 0
        """Records that arrived again (dropped)."""
        self._retired: deque[int] = deque(maxlen=8)
        self._reset()

    def _reset(self) -> None:
        self._acks: Acks | None = None
        self.dup_seen = False
        self._partial_bytes = 0
        self.cum = 0
        self._above: set[int] = set()
        self._lanes = {spec.index: _LaneIn(spec) for spec in self._specs}
        self.dirty = False

    def on_epoch(self, epoch: int) -> bool:
        """The peer's stream epoch in a datagram: a new one starts a new stream. False for
        a retired epoch (a datagram delayed past the change): ignore its records."""
        if epoch == self.epoch:
            return True
        if epoch in self._retired:
            return False
        if self.epoch is not None:
            logger.debug("peer restarted its reliable stream (epoch %d -> %d)", self.epoch, epoch)
            self._retired.append(self.epoch)
        self.epoch = epoch
        self._reset()
        return True

    def acks(self) -> Acks | None:
        """What to acknowledge in the next datagram (``None`` before anything arrived)."""
        if self.epoch is None:
            return None
        self.dirty = self.dup_seen = False
        cached = self._acks
        if cached is not None and cached.cum == self.cum and not self._above:
            return cached
        if not self._above:
            self._acks = Acks(self.epoch, self.cum)
            return self._acks
        top = min(max(self._above) - self.cum - 1, MAX_ACK_BYTES * 8 - 1)
        bits = bytearray(top // 8 + 1)
        base = self.cum + 1
        for rid in self._above:
            i = rid - base
            if 0 <= i <= top:
                bits[i >> 3] |= 1 << (i & 7)
        return Acks(self.epoch, self.cum, bytes(bits))

    def receive(self, record: Record) -> list[tuple[int, Any]]:
        """Take one record; returns the ``(lane, body)`` messages it completes, in order.

        Raises ``ProtocolError`` for a record that breaks the rules (wrong lane kind, a
        piece that does not fit its message, a message over the size limit).
        """
        lane = self._lanes.get(record.lane)
        rid = record.rid
        if rid is None:
            if lane is None:
                raise ProtocolError(f"record on lane {record.lane}, which is not a lane")
            if lane.spec.reliable:
                raise ProtocolError(f"unreliable record on reliable lane {record.lane}")
            return [(record.lane, record.body)]
        if rid < self.cum or rid in self._above:
            self.duplicates += 1
            self.dup_seen = True  # a copy, or our ack was lost: ack again, without hurry
            return []
        if rid >= self.cum + self.window:
            return []  # beyond the window: not acked, the sender resends it later
        self.dirty = True
        if rid == self.cum:
            self.cum += 1
            above = self._above
            while self.cum in above:
                above.discard(self.cum)
                self.cum += 1
        else:
            self._above.add(rid)
        assert record.lseq is not None
        if lane is None:  # acknowledged above, so the sender stops resending it
            raise ProtocolError(f"record on lane {record.lane}, which is not a lane (is the "
                                f"peer configured with more channels?)")
        if not lane.spec.reliable:
            raise ProtocolError(f"reliable record on unreliable lane {record.lane}")
        if record.count:
            try:
                body = self._piece(lane, record)
            except ProtocolError as exc:
                # the message is lost for good: its lane moves on without it
                dropped = lane.partial.pop(record.lseq, None)
                if dropped is not None:
                    self._partial_bytes -= dropped.size
                failed = lane.failed
                failed.add(record.lseq)
                if len(failed) > self.window:  # an unordered lane never prunes by next_lseq
                    failed.discard(min(failed))
                raise BadMessage(str(exc), self._complete(lane, record.lseq, _SKIP)) from exc
            if body is _INCOMPLETE:
                return []
        else:
            body = record.body
        return self._complete(lane, record.lseq, body)

    def _piece(self, lane: _LaneIn, record: Record) -> Any:
        assert record.lseq is not None
        if record.lseq in lane.failed:
            return _INCOMPLETE  # the rest of a message already found bad
        if record.lseq < lane.next_lseq and lane.spec.ordered:
            raise ProtocolError("piece of a message already delivered")
        partial = lane.partial.get(record.lseq)
        if partial is None:
            partial = lane.partial[record.lseq] = _Partial(record.count)
        if partial.count != record.count or record.index in partial.parts:
            raise ProtocolError(f"piece {record.index} of message {record.lseq} does not fit")
        piece: bytes = record.body
        if partial.size + len(piece) > self.limits.max_size:
            raise ProtocolError(f"message of over {self.limits.max_size} bytes (limit)")
        if self._partial_bytes + len(piece) > self.max_partial_bytes:  # a broken peer
            raise ProtocolError(f"over {self.max_partial_bytes} bytes of half-received messages")
        partial.size += len(piece)
        self._partial_bytes += len(piece)
        partial.parts[record.index] = piece
        if len(partial.parts) < partial.count:
            return _INCOMPLETE
        del lane.partial[record.lseq]
        self._partial_bytes -= partial.size
        payload = b"".join(partial.parts[i] for i in range(partial.count))
        return unpack_body(payload, self.limits)

    def _complete(self, lane: _LaneIn, lseq: int, body: Any) -> list[tuple[int, Any]]:
        """``body`` (or :data:`_SKIP` for a bad message) completes message ``lseq``: what
        may be delivered now."""
        index = lane.spec.index
        if not lane.spec.ordered:
            return [] if body is _SKIP else [(index, body)]
        if lseq != lane.next_lseq:
            if lseq > lane.next_lseq:
                if len(lane.ready) >= self.window:  # only a broken peer gets here
                    raise ProtocolError(f"over {self.window} messages waiting for one gap")
                lane.ready[lseq] = body
            return []
        out = [] if body is _SKIP else [(index, body)]
        lane.next_lseq += 1
        ready = lane.ready
        while lane.next_lseq in ready:
            body = ready.pop(lane.next_lseq)
            if body is not _SKIP:
                out.append((index, body))
            lane.next_lseq += 1
        lane.failed = {n for n in lane.failed if n >= lane.next_lseq} if lane.failed else set()
        return out


_INCOMPLETE: Any = object()
_SKIP: Any = object()


class BadMessage(ProtocolError):
    """A message of a peer was malformed and is dropped; ``delivered`` holds the messages of
    its lane that follow it and may now be delivered."""

    def __init__(self, message: str, delivered: list[tuple[int, Any]]) -> None:
        super().__init__(message)
        self.delivered = delivered


CONTROL_PRIORITY = 1000
"""The control lane (``bye``, ``alias``) goes before every configured lane."""


def lane_specs(channels: Any) -> list[LaneSpec]:
    """The lanes of a mesh with these :class:`~netplay.config.ChannelConfig` channels: the
    control lane at index 0 (the state channel's index), then one lane per other channel."""
    specs = [LaneSpec(0, reliable=True, ordered=True, priority=CONTROL_PRIORITY)]
    for index, channel in enumerate(channels):
        if index:
            specs.append(LaneSpec(index, channel.is_reliable, channel.ordered, channel.priority))
    return specs
