"""The state channel of one peer: snapshots, deltas, acks, clock, liveness and stats. No I/O.

Per peer and tick netplay sends at most one :class:`~netplay.wire.Datagram` with a snapshot: the
newest pending snapshot (if the game sent one since the last datagram), delta-encoded against
the newest snapshot this peer acknowledged (:class:`~netplay.delta.DeltaEncoder`, Quake 3 style),
with our own ack and the clock echo riding along; with nothing to send, a bare heartbeat goes
out every ``heartbeat_interval``. From what arrives:

- ``echo`` gives an NTP-style sample to :class:`~netplay.clock.ClockSync` (RTT, offset);
- ``ack`` moves the delta baseline;
- the snapshot is decoded (:class:`~netplay.delta.DeltaDecoder`), judged newest / stale /
  duplicate by :class:`~netplay.snapshots.SnapshotBuffer`, and, when newest, added to the
  :class:`~netplay.interpolation.InterpolationBuffer` at its sender time mapped to our clock;
- the arrival refreshes ``last_heard`` (silence for ``disconnect_timeout``: timed out).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from .clock import ClockSync
from .delta import STALE, DeltaDecoder, DeltaEncoder, packed_size
from .interpolation import InterpolationBuffer
from .seq import next_seq, seq_gt
from .snapshots import SnapshotBuffer, Verdict
from .stats import PeerStats, StatsTracker
from .wire import Datagram, pack_body, pack_head, pack_tail, unpack_datagram

__all__ = ["PeerState"]

logger = logging.getLogger(__name__)

_NOTHING: Any = object()

MAX_TRACKED = 256
"""Snapshots tracked until acknowledged (beyond that the oldest are forgotten)."""
DELIVERY_WINDOW = 0.5
"""Seconds of acknowledgements the delivery rate is measured over."""
SNAPSHOT_GAP_LIMIT = 0.5
"""Seconds: a longer gap between two snapshots is a pause, not the stream's rate."""


class PeerState:
    """State-channel bookkeeping for one remote peer."""

    def __init__(self, now: float, *, delta: bool = True,
                 interpolation: InterpolationBuffer | None = None) -> None:
        self.out_seq = 0
        self.snap_seq = 0
        self.pending: Any = _NOTHING
        self.pending_tick = 0
        self.pending_packed: bytes | None = None
        self.last_sent = float("-inf")
        """When the last datagram of any kind went to this peer."""
        self.last_snapshot_sent = float("-inf")
        """When the last datagram with a snapshot went to this peer."""
        self.snapshot_gap: float | None = None
        """Seconds between snapshots sent, smoothed (``None`` before two went out)."""
        self.last_heard = now
        self.echo: tuple[float, float] | None = None
        self.size_warned = False
        self._in_flight: deque[tuple[int, float, int]] = deque()
        """(snapshot seq, sent at, datagram bytes) of snapshots not yet acknowledged."""
        self._in_flight_bytes = 0
        self._delivered = 0
        """Bytes of snapshot datagrams that left the network (acked, or lost before one that
        was acked)."""
        self._delivery: deque[tuple[float, int]] = deque()
        """(time, ``_delivered``) at each ack that moved: the delivery rate's samples."""
        self.acked: int | None = None
        """The newest snapshot seq the peer acknowledged (with or without deltas)."""
        """(snapshot seq, sent at) of snapshots sent and not yet acknowledged."""
        self.timeout_posted: int | None = None
        """Link attempt already reported as timed out (report each attempt once)."""
        self.delta = delta
        self.encoder = DeltaEncoder()
        self.decoder = DeltaDecoder()
        self.snapshots = SnapshotBuffer()
        self.clock = ClockSync()
        self.interp = interpolation if interpolation is not None else InterpolationBuffer()
        self.stats = StatsTracker()
        self.lock = threading.Lock()
        """Guards ``interp`` and ``stats`` reads from a game thread (SyncMesh)."""

    @property
    def has_pending(self) -> bool:
        """True when a snapshot waits for the next datagram."""
        return self.pending is not _NOTHING

    def set_pending(self, body: Any, tick: int, packed: bytes | None = None) -> None:
        """Make ``body`` the snapshot for the next datagram (replacing any older pending one).

        ``packed``, when given, is ``body`` already encoded (:func:`~netplay.wire.pack_body`),
        and ``body`` is then a private copy nobody mutates: it is kept as a delta baseline as
        it is (the data plane copies a state once for all its receivers).
        """
        self.pending = body
        self.pending_tick = tick
        self.pending_packed = packed

    def _take_snapshot(self) -> tuple[int, int, int | None, Any, bytes] | None:
        """Encode the pending snapshot: ``(seq, tick, baseline, body, packed body)``."""
        pending = self.pending
        if pending is _NOTHING:
            return None
        seq = self.snap_seq
        packed = self.pending_packed
        if self.delta:
            baseline, body = self.encoder.encode(seq, pending, copy=packed is None)
        else:
            baseline, body = None, pending
        if body is pending:  # sent whole (or a delta that replaces a scalar state whole)
            body_bytes = packed if packed is not None else pack_body(pending)
            full_size = len(body_bytes)
        else:
            body_bytes = pack_body(body)
            full_size = len(packed) if packed is not None else packed_size(pending)
        if baseline is not None:
            # the same figure as delta_bytes_saved(pending, body), from the sizes at hand
            self.stats.on_delta_saved(full_size - len(body_bytes))
        self.snap_seq = next_seq(seq)
        self.pending = _NOTHING
        self.pending_packed = None
        return seq, self.pending_tick, baseline, body, body_bytes

    def _stamp(self, now: float) -> int:
        out_seq = self.out_seq
        self.out_seq = next_seq(out_seq)
        self.last_sent = now
        return out_seq

    def head(self, now: float, *, snapshot: bool = True) -> bytes:
        """The first part of the next datagram (:func:`~netplay.wire.pack_head`): seq, time,
        echo, ack and, with ``snapshot``, the pending snapshot if there is one."""
        taken = self._take_snapshot() if snapshot else None
        ack = self.decoder.last_decoded_seq
        seq = self._stamp(now)
        if taken is None:
            return pack_head(seq, now, self.echo, ack)
        snap_seq, tick, baseline, _, body_bytes = taken
        head = pack_head(seq, now, self.echo, ack, (snap_seq, tick, baseline), body_bytes)
        if len(self._in_flight) >= MAX_TRACKED:  # a peer that never acks: forget the oldest
            self._in_flight_bytes -= self._in_flight.popleft()[2]
        self._in_flight.append((snap_seq, now, len(head)))
        gap = now - self.last_snapshot_sent
        if gap < SNAPSHOT_GAP_LIMIT:  # a stream, not the first snapshot after a pause
            self.snapshot_gap = gap if self.snapshot_gap is None \
                else self.snapshot_gap + (gap - self.snapshot_gap) / 4
        self.last_snapshot_sent = now
        self._in_flight_bytes += len(head)
        return head

    def next_snapshot_at(self, now: float) -> float | None:
        """When the next snapshot is expected to leave, if snapshots go out regularly (the
        game sends states at a steady rate); ``None`` when none went out for two gaps."""
        gap = self.snapshot_gap
        if gap is None or now - self.last_snapshot_sent > 2 * gap:
            return None
        return self.last_snapshot_sent + gap

    def build(self, now: float) -> Datagram:
        """The next datagram as a value, through the send path's own encoding (:meth:`head`
        and :func:`~netplay.wire.pack_tail`) and the receive path's decoding: for tests."""
        return unpack_datagram(self.head(now) + pack_tail(1, None, ()))

    def snapshot_in_flight_age(self, now: float) -> float:
        """Seconds since the oldest snapshot sent after the newest one the peer acknowledged
        was sent (0.0 when none): on a link slower than the game sends, snapshots queue in
        the network and this age grows."""
        flight = self._in_flight
        return now - flight[0][1] if flight else 0.0

    def _acked_snapshot(self, ack: int, now: float) -> None:
        if self.acked is not None and not seq_gt(ack, self.acked):
            return
        self.acked = ack
        flight = self._in_flight
        while flight and not seq_gt(flight[0][0], ack):
            size = flight.popleft()[2]
            self._in_flight_bytes -= size
            self._delivered += size
        samples = self._delivery
        samples.append((now, self._delivered))
        while len(samples) > 2 and now - samples[1][0] >= DELIVERY_WINDOW:
            samples.popleft()

    def delivery_rate(self, now: float) -> float | None:
        """Bytes per second of snapshot datagrams the peer acknowledged over the last
        :data:`DELIVERY_WINDOW` (``None`` until it has been measured over 0.1 s)."""
        samples = self._delivery
        if len(samples) < 2 or samples[-1][0] - samples[0][0] < 0.1:
            return None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        return (d1 - d0) / (t1 - t0)

    def snapshots_over_budget(self, now: float, round_trip: float) -> bool:
        """True when more snapshot bytes are unacknowledged than twice what the link
        delivered in ``round_trip`` seconds (at least two datagrams): the next snapshot would
        only queue behind them (a link slower than the game sends)."""
        rate = self.delivery_rate(now)
        if rate is None or len(self._in_flight) < 2:
            return False
        return self._in_flight_bytes > max(2 * self._in_flight[-1][2], 2 * rate * round_trip)

    def receive(self, datagram: Datagram, now: float) -> Any:
        """Take one datagram; returns the decoded snapshot state when it is the newest,
        else ``NOTHING``. Raises ``ProtocolError`` for a delta that does not apply."""
        self.last_heard = now
        self.echo = (datagram.sent_at, now)
        echo = datagram.echo
        if echo is not None:
            self.clock.on_sample(echo[0], echo[1], datagram.sent_at, now)
        if datagram.ack is not None:
            self.encoder.ack(datagram.ack)
            self._acked_snapshot(datagram.ack, now)
        snap = datagram.snapshot
        if snap is None:
            return _NOTHING
        self.stats.on_snapshot(now)
        state = self.decoder.decode(snap.seq, snap.baseline, snap.body)
        if state is STALE:  # reordered beyond the decoder's history: stale, count it so
            self.snapshots.push(snap.seq, snap.tick, datagram.sent_at, now)
            return _NOTHING
        verdict = self.snapshots.push(snap.seq, snap.tick, datagram.sent_at, now)
        if verdict is not Verdict.ACCEPTED:
            logger.debug("snapshot %d: %s", snap.seq, verdict.value)
            return _NOTHING
        with self.lock:
            self.interp.add(self.clock.to_local(datagram.sent_at), state, snap.tick,
                            received_at=now)
        return state

    def peer_stats(self, now: float) -> PeerStats:
        """The net_graph figures of this peer at time ``now``."""
        with self.lock:
            return self.stats.snapshot(now, clock=self.clock, buffer=self.snapshots,
                                       interp=self.interp)


NOTHING = _NOTHING
"""Returned by :meth:`PeerState.receive` when no new state arrived."""
