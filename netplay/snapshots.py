"""Per-sender snapshot ordering: newest wins, stale and duplicate packets are counted.

Snapshots travel on an unordered, unreliable channel, so they can arrive late, twice or not at
all. A :class:`SnapshotBuffer` (one per sending peer) decides for each arriving snapshot:

- ``ACCEPTED``: its sequence number is newer than any seen; it becomes
  :attr:`~SnapshotBuffer.latest`.
- ``STALE``: older than the current snapshot but not seen before (it arrived after a newer
  one). It is never delivered as current; it only fills its sequence gap so loss accounting
  stays right.
- ``DUPLICATE``: this sequence number was already received.

Loss is counted from sequence gaps. A gap counts as lost when the newer snapshot arrives and is
taken back when the missing snapshot turns up late (within the tracking window). Received
sequence numbers are kept as a bit mask relative to the newest, so a packet costs a shift and a
bit test.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from netplay.errors import ProtocolError
from netplay.seq import SEQ_HALF, ahead, is_seq

__all__ = ["Arrival", "SnapshotBuffer", "Verdict"]

logger = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What :meth:`SnapshotBuffer.push` did with a snapshot."""

    ACCEPTED = "accepted"
    """Newest so far: now the current snapshot."""
    STALE = "stale"
    """Older than the current snapshot and not seen before: counted, never delivered."""
    DUPLICATE = "duplicate"
    """Already received: dropped and counted."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """The envelope of the newest accepted snapshot (its state lives in the interpolation
    buffer; :class:`netplay.wire.Snapshot` is the snapshot on the wire)."""

    seq: int
    """16-bit wrapping sequence number assigned by the sender."""
    tick: int
    """The sender's game tick when the snapshot was taken."""
    sent_at: float
    """Sender clock (seconds) when it was sent; map it with ``ClockSync.to_local``."""
    received_at: float
    """Local monotonic time (seconds) when it arrived."""


class SnapshotBuffer:
    """Newest-wins judge of one sender's snapshots, with loss, stale and duplicate counters.

    It keeps only the newest envelope (:attr:`latest`), no states. ``window`` is how many
    sequence numbers behind the newest are remembered for duplicate detection and for taking
    back losses (older arrivals are reported ``STALE`` without correcting ``lost``).
    ``loss_window`` is how many recent sequence numbers :attr:`loss_ratio` looks at.
    """

    def __init__(self, *, window: int = 256, loss_window: int = 128) -> None:
        if not 1 <= loss_window <= window < SEQ_HALF:
            raise ValueError(
                f"need 1 <= loss_window <= window < {SEQ_HALF}, got {loss_window=} {window=}"
            )
        self._window = window
        self._window_mask = (1 << window) - 1
        self._loss_window = loss_window
        self._latest: Arrival | None = None
        # Bit i set: sequence number (newest - i) was received.
        self._seen = 0
        # How many sequence numbers, newest included, have been expected since the first
        # arrival (capped at the window): the denominator for loss_ratio.
        self._span = 0
        self.received = 0
        """Distinct snapshots received (accepted plus stale)."""
        self.accepted = 0
        """Snapshots that became the current one."""
        self.stale = 0
        """Snapshots that arrived after a newer one (never delivered as current)."""
        self.duplicates = 0
        """Snapshots whose sequence number was already received."""
        self.lost = 0
        """Sequence numbers skipped and not (yet) filled by a late arrival."""

    @property
    def latest(self) -> Arrival | None:
        """The newest accepted snapshot's envelope, or ``None`` before the first."""
        return self._latest

    @property
    def loss_ratio(self) -> float:
        """Fraction (0..1) of the last ``loss_window`` expected sequence numbers not received.

        Snapshots still in flight behind a reordered newer one count as missing until they
        arrive. ``0.0`` before any snapshot.
        """
        n = min(self._span, self._loss_window)
        if n == 0:
            return 0.0
        got = (self._seen & ((1 << n) - 1)).bit_count()
        return (n - got) / n

    def push(self, seq: object, tick: object, sent_at: object, received_at: float) -> Verdict:
        """Offer an arriving snapshot; returns whether it was accepted, stale or a duplicate.

        Raises :class:`~netplay.errors.ProtocolError` for a malformed envelope (sequence number
        out of range, non-integer tick, non-finite timestamp).
        """
        # ``object`` parameters: the checks below are the type checks (see netplay.seq).
        if not is_seq(seq):
            raise ProtocolError(f"snapshot sequence number must be an int in 0..65535: {seq!r}")
        if type(tick) is not int:
            raise ProtocolError(f"snapshot tick must be an int, got {tick!r}")
        if not isinstance(sent_at, (int, float)) or not math.isfinite(sent_at):
            raise ProtocolError(f"snapshot timestamp must be a finite number, got {sent_at!r}")
        latest = self._latest
        if latest is None:
            return self._accept(Arrival(seq, tick, float(sent_at), received_at), 1)
        d = ahead(seq, latest.seq)  # both checked already
        if 0 < d < SEQ_HALF:
            return self._accept(Arrival(seq, tick, float(sent_at), received_at), d)
        behind = -d  # 0 for the current one; exactly SEQ_HALF apart (d > 0) is too old
        if 0 <= behind < self._window:
            bit = 1 << behind
            if self._seen & bit:
                self.duplicates += 1
                return Verdict.DUPLICATE
            self._seen |= bit
            if behind < self._span:
                self.lost -= 1  # it filled a gap counted as lost
        self.received += 1
        self.stale += 1
        logger.debug("%r: stale snapshot %d (current %d)", self, seq, latest.seq)
        return Verdict.STALE

    def _accept(self, snap: Arrival, ahead: int) -> Verdict:
        if self._latest is not None:
            self.lost += ahead - 1
            self._seen = ((self._seen << ahead) | 1) & self._window_mask
            self._span = min(self._span + ahead, self._window)
        else:
            self._seen = 1
            self._span = 1
        self._latest = snap
        self.received += 1
        self.accepted += 1
        return Verdict.ACCEPTED

    def reset(self) -> None:
        """Forget every snapshot and counter (for a sender that restarted its sequence)."""
        self.__init__(window=self._window, loss_window=self._loss_window)  # type: ignore[misc]

    def __repr__(self) -> str:
        seq = None if self._latest is None else self._latest.seq
        return f"<SnapshotBuffer latest={seq} received={self.received} lost={self.lost}>"
