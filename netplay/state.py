"""The state channel of one peer: snapshots, deltas, acks, clock, liveness and stats. No I/O.

Per peer and tick netplay sends at most one :class:`~netplay.wire.StateDatagram`: the newest
pending snapshot (if the game sent one since the last datagram), delta-encoded against the
newest snapshot this peer acknowledged (:class:`~netplay.delta.DeltaEncoder`, Quake 3 style),
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
from typing import Any

from .clock import ClockSync
from .delta import DeltaDecoder, DeltaEncoder, delta_bytes_saved
from .interpolation import InterpolationBuffer
from .seq import next_seq
from .snapshots import SnapshotBuffer, Verdict
from .stats import PeerStats, StatsTracker
from .wire import Snapshot, StateDatagram

__all__ = ["PeerState"]

logger = logging.getLogger(__name__)

_NOTHING: Any = object()


class PeerState:
    """State-channel bookkeeping for one remote peer."""

    def __init__(self, now: float, *, delta: bool = True,
                 interpolation: InterpolationBuffer | None = None) -> None:
        self.out_seq = 0
        self.snap_seq = 0
        self.pending: Any = _NOTHING
        self.pending_tick = 0
        self.last_sent = float("-inf")
        self.last_heard = now
        self.echo: tuple[float, float] | None = None
        self.size_warned = False
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

    def set_pending(self, body: Any, tick: int) -> None:
        """Make ``body`` the snapshot for the next datagram (replacing any older pending one)."""
        self.pending = body
        self.pending_tick = tick

    def build(self, now: float) -> StateDatagram:
        """The next datagram: the pending snapshot (if any) with ack and echo."""
        snapshot = None
        if self.pending is not _NOTHING:
            seq = self.snap_seq
            if self.delta:
                baseline, body = self.encoder.encode(seq, self.pending)
                if baseline is not None:
                    self.stats.on_delta_saved(delta_bytes_saved(self.pending, body))
            else:
                baseline, body = None, self.pending
            snapshot = Snapshot(seq, self.pending_tick, baseline, body)
            self.snap_seq = next_seq(seq)
            self.pending = _NOTHING
        # The echo's t1 is our receive time; the receiver takes our sent_at as t2.
        datagram = StateDatagram(
            seq=self.out_seq, sent_at=now, echo=self.echo,
            ack=self.decoder.last_decoded_seq, snapshot=snapshot,
        )
        self.out_seq = next_seq(self.out_seq)
        self.last_sent = now
        return datagram

    def receive(self, datagram: StateDatagram, now: float) -> Any:
        """Take one datagram; returns the decoded snapshot state when it is the newest,
        else ``_NOTHING``. Raises ``ProtocolError`` for a delta that does not apply."""
        self.last_heard = now
        self.echo = (datagram.sent_at, now)
        if datagram.echo is not None:
            t0, t1 = datagram.echo
            self.clock.on_sample(t0, t1, datagram.sent_at, now)
        if datagram.ack is not None:
            self.encoder.ack(datagram.ack)
        snap = datagram.snapshot
        if snap is None:
            return _NOTHING
        self.stats.on_snapshot(now)
        state = self.decoder.decode(snap.seq, snap.baseline, snap.body)
        verdict = self.snapshots.push(snap.seq, snap.tick, datagram.sent_at, state, now)
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
