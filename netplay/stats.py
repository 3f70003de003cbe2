"""Per-peer network statistics: a ``net_graph`` for every peer, cheap enough to read each frame.

:class:`StatsTracker` counts what the transport sees (bytes and packets each way, snapshots,
bad packets, bytes saved by delta compression) with :class:`RateMeter` rolling rates, and
:meth:`StatsTracker.snapshot` combines them with the figures the other state-sync parts
already keep (:class:`~netplay.clock.ClockSync`, :class:`~netplay.snapshots.SnapshotBuffer`,
:class:`~netplay.interpolation.InterpolationBuffer`) into an immutable :class:`PeerStats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

from netplay.clock import ClockSync
from netplay.interpolation import InterpolationBuffer
from netplay.snapshots import SnapshotBuffer

__all__ = ["CandidatePair", "CandidateType", "PeerStats", "RateMeter", "StatsTracker"]

CandidateType: TypeAlias = Literal["host", "srflx", "prflx", "relay"]
"""An ICE candidate's type (RFC 8445): ``"host"`` an address of the machine itself,
``"srflx"`` its public address as a STUN server saw it (behind a NAT), ``"prflx"`` an address
learned from the peer's connectivity checks (a NAT mapping STUN did not show), ``"relay"`` an
address on a TURN server that relays every packet."""

_INDIRECTION: dict[str, int] = {"host": 0, "prflx": 1, "srflx": 2, "relay": 3}


@dataclass(frozen=True, slots=True)
class CandidatePair:
    """The ICE candidate pair a link to a peer uses: which path its packets take."""

    local_type: CandidateType
    """Type of our end."""
    local_address: tuple[str, int]
    """Our end: (IP address, UDP port). For ``"host"`` behind a NAT, the private address."""
    remote_type: CandidateType
    """Type of the peer's end."""
    remote_address: tuple[str, int]
    """The peer's end as we send to it: (IP address, UDP port)."""

    @property
    def relayed(self) -> bool:
        """True when a TURN server relays the link (either end is ``"relay"``)."""
        return "relay" in (self.local_type, self.remote_type)

    @property
    def kind(self) -> CandidateType:
        """The pair in one word, the more indirect of its two ends: ``"relay"`` (through
        TURN), ``"srflx"`` or ``"prflx"`` (direct, through NATs), ``"host"`` (direct, no NAT
        between the two: a LAN or the same machine)."""
        return max(self.local_type, self.remote_type, key=_INDIRECTION.__getitem__)

    def __str__(self) -> str:
        local, remote = self.local_address, self.remote_address
        return (f"{self.kind} {local[0]}:{local[1]} ({self.local_type}) -> "
                f"{remote[0]}:{remote[1]} ({self.remote_type})")


@dataclass(frozen=True, slots=True)
class PeerStats:
    """Network statistics of one peer at one moment. Times are milliseconds."""

    rtt_ms: float | None
    """Smoothed round-trip time (RFC 6298), or ``None`` before the first heartbeat reply."""
    rtt_last_ms: float | None
    """The latest round-trip time sample, or ``None``."""
    jitter_ms: float | None
    """Round-trip jitter (mean deviation of consecutive RTT samples), or ``None``."""
    loss: float
    """Fraction (0..1) of recent snapshots lost, from sequence gaps."""
    snapshots_received: int
    """Distinct snapshots received from the peer (current plus stale)."""
    snapshots_lost: int
    """Snapshots skipped in the sequence and never received."""
    duplicates: int
    """Snapshots received more than once (dropped)."""
    stale: int
    """Snapshots that arrived after a newer one (dropped)."""
    bad_packets: int
    """Packets from the peer that could not be decoded."""
    bytes_in_per_s: float
    """Bytes received per second, over the last rate window."""
    bytes_out_per_s: float
    """Bytes sent per second."""
    packets_in_per_s: float
    """Packets received per second."""
    packets_out_per_s: float
    """Packets sent per second."""
    snapshot_rate_hz: float
    """Snapshots received per second."""
    interp_delay_ms: float | None
    """Current interpolation delay, or ``None`` without an interpolation buffer."""
    clock_offset_ms: float | None
    """Peer clock minus local clock, or ``None`` until clock sync has a sample."""
    delta_bytes_saved: int
    """Bytes saved so far by delta compression of snapshots sent to this peer."""
    bytes_in: int
    """Bytes received in total."""
    bytes_out: int
    """Bytes sent in total."""
    candidate_pair: CandidatePair | None = None
    """The ICE candidate pair the link uses (host, server-reflexive, peer-reflexive or
    relayed, with both addresses), or ``None`` while no link is up."""

    def summary(self) -> str:
        """A one-line, net_graph-style summary for an on-screen overlay or a log line."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return (
            f"rtt {ms(self.rtt_ms)} ms (last {ms(self.rtt_last_ms)}) "
            f"jitter {ms(self.jitter_ms)} ms loss {self.loss:.1%} "
            f"in {self.bytes_in_per_s / 1000:.1f} kB/s {self.packets_in_per_s:.0f} pkt/s "
            f"out {self.bytes_out_per_s / 1000:.1f} kB/s {self.packets_out_per_s:.0f} pkt/s "
            f"snap {self.snapshot_rate_hz:.0f} Hz interp {ms(self.interp_delay_ms)} ms"
            f" path {self.candidate_pair.kind if self.candidate_pair else '-'}"
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


class RateMeter:
    """Rolling rate of a quantity over the last ``window`` seconds, in ``buckets`` slices.

    Adding costs a division and an addition; the rate is accurate to one slice
    (``window / buckets``). Times must not go backwards (earlier times count as the latest).
    """

    def __init__(self, window: float = 1.0, buckets: int = 10) -> None:
        if not window > 0 or not math.isfinite(window):
            raise ValueError(f"window must be a positive number of seconds, got {window}")
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, got {buckets}")
        self.window = window
        """Length of the averaging window (seconds)."""
        self._width = window / buckets
        self._slots = [0.0] * buckets
        self._n = buckets
        self._index: int | None = None  # absolute slice number of the current slice
        self._start = 0.0
        self.total = 0.0
        """Sum of everything ever added."""

    def _advance(self, now: float) -> int:
        index = math.floor(now / self._width)
        current = self._index
        if current is None:
            self._index, self._start = index, now
            return index
        if index <= current:
            return current
        slots, n = self._slots, len(self._slots)
        if index - current >= n:
            for k in range(n):
                slots[k] = 0.0
        else:
            for k in range(current + 1, index + 1):
                slots[k % n] = 0.0
        self._index = index
        return index

    def add(self, now: float, amount: float = 1.0) -> None:
        """Record ``amount`` (bytes, packets, ...) at time ``now``."""
        index = math.floor(now / self._width)
        if index != self._index:  # a new slice (or the first, or time went backwards)
            index = self._advance(now)
        self._slots[index % self._n] += amount
        self.total += amount

    def rate(self, now: float) -> float:
        """Amount per second over the last window (0 before anything was added)."""
        if self._index is None:
            return 0.0
        index = self._advance(now)
        n = len(self._slots)
        window_start = (index - n + 1) * self._width
        # The current slice is partly over; early on the window reaches back only to the start.
        span = max(now - max(window_start, self._start), self._width)
        return sum(self._slots) / span


def _add_packet(size: RateMeter, count: RateMeter, now: float, nbytes: int) -> None:
    """``size.add(now, nbytes); count.add(now)`` for two meters of the same window, with
    one slice computation when both are in the current slice (every packet but one per
    slice)."""
    index = math.floor(now / size._width)
    if index == size._index and index == count._index and size._n == count._n:
        slot = index % size._n
        size._slots[slot] += nbytes
        size.total += nbytes
        count._slots[slot] += 1.0
        count.total += 1.0
    else:
        size.add(now, nbytes)
        count.add(now)


class StatsTracker:
    """Counts one peer's traffic; :meth:`snapshot` turns it into :class:`PeerStats`.

    Call :meth:`on_send` / :meth:`on_receive` for every packet on any channel,
    :meth:`on_snapshot` for each snapshot received, :meth:`on_bad_packet` for each packet that
    failed to decode, and :meth:`on_delta_saved` with the bytes delta compression saved.
    """

    def __init__(self, window: float = 1.0) -> None:
        self._bytes_in = RateMeter(window)
        self._bytes_out = RateMeter(window)
        self._packets_in = RateMeter(window)
        self._packets_out = RateMeter(window)
        self._snapshots = RateMeter(window)
        self.bad_packets = 0
        """Packets that could not be decoded."""
        self.delta_bytes_saved = 0
        """Bytes saved by delta compression so far."""
        self.candidate_pair: CandidatePair | None = None
        """The ICE candidate pair of the current link (set when a link opens)."""

    def on_send(self, now: float, nbytes: int) -> None:
        """A packet of ``nbytes`` was sent to the peer."""
        _add_packet(self._bytes_out, self._packets_out, now, nbytes)

    def on_receive(self, now: float, nbytes: int) -> None:
        """A packet of ``nbytes`` arrived from the peer."""
        _add_packet(self._bytes_in, self._packets_in, now, nbytes)

    def on_snapshot(self, now: float) -> None:
        """A snapshot arrived from the peer (whatever its verdict)."""
        self._snapshots.add(now)

    def on_bad_packet(self) -> None:
        """A packet from the peer could not be decoded."""
        self.bad_packets += 1

    def on_delta_saved(self, nbytes: int) -> None:
        """Delta compression saved ``nbytes`` (may be negative) on a snapshot to the peer."""
        self.delta_bytes_saved += nbytes

    def snapshot(
        self,
        now: float,
        *,
        clock: ClockSync | None = None,
        buffer: SnapshotBuffer | None = None,
        interp: InterpolationBuffer | None = None,
    ) -> PeerStats:
        """The statistics at time ``now``; parts not given report ``None`` or zero."""
        synced = clock is not None and clock.synced
        return PeerStats(
            rtt_ms=_ms(clock.rtt) if clock is not None else None,
            rtt_last_ms=_ms(clock.rtt_last) if clock is not None else None,
            jitter_ms=_ms(clock.jitter) if clock is not None else None,
            loss=buffer.loss_ratio if buffer is not None else 0.0,
            snapshots_received=buffer.received if buffer is not None else 0,
            snapshots_lost=buffer.lost if buffer is not None else 0,
            duplicates=buffer.duplicates if buffer is not None else 0,
            stale=buffer.stale if buffer is not None else 0,
            bad_packets=self.bad_packets,
            bytes_in_per_s=self._bytes_in.rate(now),
            bytes_out_per_s=self._bytes_out.rate(now),
            packets_in_per_s=self._packets_in.rate(now),
            packets_out_per_s=self._packets_out.rate(now),
            snapshot_rate_hz=self._snapshots.rate(now),
            interp_delay_ms=_ms(interp.delay) if interp is not None else None,
            clock_offset_ms=_ms(clock.offset) if synced and clock is not None else None,
            delta_bytes_saved=self.delta_bytes_saved,
            bytes_in=int(self._bytes_in.total),
            bytes_out=int(self._bytes_out.total),
            candidate_pair=self.candidate_pair,
        )
