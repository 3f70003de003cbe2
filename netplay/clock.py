"""NTP-style clock offset and round-trip time from timestamped heartbeats.

A heartbeat exchange gives four timestamps: ``t0`` local send, ``t1`` remote receive, ``t2``
remote send, ``t3`` local receive (each on its own side's monotonic clock). Then

- ``rtt = (t3 - t0) - (t2 - t1)``: the time on the wire, without the remote's processing time;
- ``offset = ((t1 - t0) + (t2 - t3)) / 2``: remote clock minus local clock, exact when both
  directions take equally long. Its error is at most ``rtt / 2``.

Queueing makes single samples noisy but only ever adds delay, so, as NTP's clock filter does,
the offset is taken from the sample with the smallest RTT among the last ``window`` ones.
RTT is smoothed as in RFC 6298 (``srtt``, ``rttvar``); jitter is RFC 3550's running mean
deviation, applied to consecutive RTT samples (so it is round-trip jitter).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

__all__ = ["ClockSync"]

logger = logging.getLogger(__name__)

_ALPHA = 1 / 8  # RFC 6298 smoothing gains
_BETA = 1 / 4
_JITTER_GAIN = 1 / 16  # RFC 3550 section 6.4.1
_ROUNDING = 1e-9  # seconds: float error tolerated in a computed RTT


class ClockSync:
    """Estimates one peer's clock offset, RTT and jitter from heartbeat samples.

    All times are seconds. Before the first sample the offset is 0 (clocks assumed equal) and
    the RTT figures are ``None``.
    """

    def __init__(self, window: int = 16) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._window: deque[tuple[float, float]] = deque(maxlen=window)  # (rtt, offset)
        self._offset = 0.0
        self._best: tuple[float, float] | None = None  # min(self._window), kept up to date
        self._srtt: float | None = None
        self._rttvar: float | None = None
        self._rtt_last: float | None = None
        self._jitter: float | None = None
        self.samples = 0
        """Samples accepted so far."""
        self.rejected = 0
        """Samples rejected (negative or non-finite RTT, or a clock running backwards)."""

    def on_sample(self, t0: object, t1: object, t2: object, t3: object) -> bool:
        """Add one heartbeat exchange; returns ``False`` (and counts it) if it was rejected.

        A sample is rejected when a timestamp is not a finite number, when either side's clock
        ran backwards (``t3 < t0`` or ``t2 < t1``), or when the RTT comes out negative (the
        remote claims to have held the heartbeat longer than it was away by more than 1 ns;
        less is float rounding and counts as 0).
        """
        # ``object`` parameters: compiled with mypyc, ``float`` ones would raise TypeError for a
        # str before the arithmetic below could reject it.
        a: Any = t0
        b: Any = t1
        c: Any = t2
        d: Any = t3
        try:
            rtt = (d - a) - (c - b)
            offset = ((b - a) + (c - d)) / 2
            ok = math.isfinite(rtt) and math.isfinite(offset)
        except TypeError:
            ok = False
        if ok and -_ROUNDING < rtt < 0:
            rtt = 0.0  # float rounding of a near-zero RTT, not a bad sample
        if not ok or d < a or c < b or rtt < 0:
            self.rejected += 1
            logger.debug("%r: rejected clock sample %r", self, (t0, t1, t2, t3))
            return False
        self.samples += 1
        window = self._window
        sample = (rtt, offset)
        evicted = window[0] if len(window) == window.maxlen else None
        window.append(sample)
        best = self._best
        if best is None or sample < best:
            best = sample
        elif evicted is not None and evicted == best:  # the best sample just left the window
            best = min(window)
        self._best = best
        self._offset = best[1]
        last = self._rtt_last
        if self._srtt is None or self._rttvar is None or last is None or self._jitter is None:
            self._srtt, self._rttvar, self._jitter = rtt, rtt / 2, 0.0
        else:
            self._rttvar += _BETA * (abs(self._srtt - rtt) - self._rttvar)
            self._srtt += _ALPHA * (rtt - self._srtt)
            self._jitter += _JITTER_GAIN * (abs(rtt - last) - self._jitter)
        self._rtt_last = rtt
        return True

    @property
    def offset(self) -> float:
        """Remote clock minus local clock, from the lowest-RTT recent sample (0 until synced)."""
        return self._offset

    @property
    def synced(self) -> bool:
        """Whether at least one sample was accepted."""
        return self.samples > 0

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time (RFC 6298 SRTT), or ``None`` before the first sample."""
        return self._srtt

    @property
    def rtt_var(self) -> float | None:
        """RTT variation (RFC 6298 RTTVAR), or ``None`` before the first sample."""
        return self._rttvar

    @property
    def rtt_last(self) -> float | None:
        """The most recent accepted RTT sample, or ``None``."""
        return self._rtt_last

    @property
    def rtt_min(self) -> float | None:
        """The smallest RTT in the recent window (the sample the offset comes from)."""
        return min(self._window)[0] if self._window else None

    @property
    def jitter(self) -> float | None:
        """Mean deviation of consecutive RTT samples (RFC 3550 style), or ``None``."""
        return self._jitter

    def to_local(self, remote_time: float) -> float:
        """Map a time on the remote clock (for example a snapshot's ``sent_at``) to ours."""
        return remote_time - self._offset

    def to_remote(self, local_time: float) -> float:
        """Map a local time onto the remote clock."""
        return local_time + self._offset

    def __repr__(self) -> str:
        return f"<ClockSync offset={self._offset:.6f} rtt={self._srtt} samples={self.samples}>"
