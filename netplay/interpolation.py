"""Snapshot interpolation: render a remote peer's state a little in the past.

Snapshots arrive at the send rate (say 20-60 Hz) with jitter and losses; the screen refreshes
at its own rate. Rendering each snapshot as it arrives stutters. Instead, as in Valve's Source
engine and Glenn Fiedler's "Snapshot Interpolation", an :class:`InterpolationBuffer` renders at
``now - delay`` and interpolates between the two snapshots around that time. The delay adapts:

    delay = clamp(interp_ratio * mean_send_interval + 2 * jitter, min_delay, max_delay)

With ``interp_ratio = 2`` (Valve's ``cl_interp_ratio``), one lost snapshot still leaves a later
one to interpolate towards. ``jitter`` is RFC 3550's interarrival jitter when arrival times are
passed to :meth:`InterpolationBuffer.add`, otherwise the mean deviation of the send interval.
Both are smoothed, so the delay drifts instead of jumping.

When snapshots stop, the state is extrapolated linearly from the last two snapshots for at most
``max_extrapolation`` seconds, then held there.

Default interpolation (:func:`lerp_state`) walks the state tree:

- ``int`` and ``float`` are interpolated linearly. Two equal ints stay an ``int`` (a health
  counter stays 100); two different ints give a ``float`` (games that need integers round, or
  pass their own ``lerp``).
- dicts are interpolated key by key; keys only in the newer state are taken from it, keys only
  in the older one are dropped. Lists and tuples of equal length go element by element.
- anything else (``bool``, ``str``, ``None``, ``bytes``, type changes, lists whose length
  changed) snaps to the newer value as soon as ``t > 0``.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["InterpolationBuffer", "Lerp", "Sample", "lerp_state"]

logger = logging.getLogger(__name__)

Lerp = Callable[[Any, Any, float], Any]
"""``lerp(a, b, t)``: the state ``t`` of the way from ``a`` to ``b`` (``t > 1`` extrapolates)."""

_ASSUMED_INTERVAL = 0.05  # until two snapshots arrived, assume 20 Hz
_INTERVAL_GAIN = 1 / 8
_REBASE_GAP = 1.0  # seconds; an add this far behind the newest means the time base changed
_MAX_INTERVAL_SAMPLE = 1.0  # seconds; longer gaps count as this (or max_delay if larger)
_JITTER_GAIN = 1 / 16  # RFC 3550 section 6.4.1
_TRANSIT_RISE_GAIN = 1 / 32  # per snapshot: a slower path is adopted within a second or two
_MAX_DEPTH = 1024  # as netplay.delta: mypyc-compiled recursion has no depth check


def lerp_state(a: Any, b: Any, t: float) -> Any:
    """Interpolate two states: numbers linearly, the rest snapped (see the module docstring).

    ``t = 0`` gives ``a``, ``t = 1`` gives ``b``; ``t > 1`` extrapolates numbers.
    """
    return _lerp(a, b, t, 0)


def _lerp(a: Any, b: Any, t: float, depth: int) -> Any:
    ta, tb = type(a), type(b)
    if (ta is float or ta is int) and (tb is float or tb is int):
        if a == b and ta is tb:
            return b
        return a + (b - a) * t
    if depth > _MAX_DEPTH:
        raise RecursionError(f"state nested more than {_MAX_DEPTH} levels deep")
    depth += 1
    if ta is dict and tb is dict:
        return {k: (_lerp(a[k], v, t, depth) if k in a else v) for k, v in b.items()}
    if (ta is list or ta is tuple) and ta is tb and len(a) == len(b):
        items = [_lerp(x, y, t, depth) for x, y in zip(a, b, strict=True)]
        return items if ta is list else tuple(items)
    return b if t > 0 else a


@dataclass(frozen=True, slots=True)
class Sample:
    """The result of :meth:`InterpolationBuffer.sample_detail`."""

    state: Any
    """The state to render."""
    render_time: float
    """The local time that was rendered: ``now - delay``."""
    tick: float | None
    """The sender's game tick at ``render_time``, interpolated (``None`` if ticks unknown)."""
    mode: Literal["interpolate", "extrapolate", "hold"]
    """``interpolate`` between two snapshots (or exactly on one), ``extrapolate`` past the
    newest, or ``hold``: before the oldest, with a single snapshot, or past the extrapolation
    cap."""


class InterpolationBuffer:
    """Snapshots of one remote peer by (local) time, sampled at ``now - delay`` for rendering.

    ``capacity`` bounds how many snapshots are held; older ones than the render time needs are
    dropped as sampling moves on. ``lerp`` replaces :func:`lerp_state` for whole states.
    """

    def __init__(
        self,
        min_delay: float = 0.05,
        max_delay: float = 0.5,
        interp_ratio: float = 2.0,
        max_extrapolation: float = 0.25,
        lerp: Lerp | None = None,
        *,
        capacity: int = 64,
    ) -> None:
        if not 0 <= min_delay <= max_delay or not math.isfinite(max_delay):
            raise ValueError(f"need 0 <= min_delay <= max_delay, got {min_delay}, {max_delay}")
        if not interp_ratio > 0:
            raise ValueError(f"interp_ratio must be positive, got {interp_ratio}")
        if not max_extrapolation >= 0:
            raise ValueError(f"max_extrapolation must be >= 0, got {max_extrapolation}")
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self.min_delay = min_delay
        """Lower bound of :attr:`delay` (seconds)."""
        self.max_delay = max_delay
        """Upper bound of :attr:`delay` (seconds)."""
        self.interp_ratio = interp_ratio
        """How many send intervals the delay covers (2: one snapshot may be lost)."""
        self.max_extrapolation = max_extrapolation
        """How far (seconds) past the newest snapshot to extrapolate before holding."""
        self.lerp: Lerp = lerp if lerp is not None else lerp_state
        """The interpolation function for whole states."""
        self.capacity = capacity
        """Most snapshots held."""
        self._times: list[float] = []
        self._states: list[Any] = []
        self._ticks: list[int | None] = []
        self._interval: float | None = None
        self._jitter = 0.0
        self._newest_received: float | None = None
        self._transit: float | None = None

    def __len__(self) -> int:
        return len(self._times)

    @property
    def send_interval(self) -> float | None:
        """Smoothed interval between the sender's snapshots (seconds), once two arrived."""
        return self._interval

    @property
    def jitter(self) -> float:
        """Smoothed jitter (seconds) used for the delay."""
        return self._jitter

    @property
    def transit(self) -> float:
        """Smoothed time (seconds) from a snapshot's sender time to its arrival here.

        Rendering happens at ``now - transit - delay``: the delay is counted from when
        snapshots *arrive*, not from when they were sent, so one-way latency (and any error in
        the clock offset, which shifts sender times and transits alike) never eats the buffer.
        Tracks the fast arrivals: it drops at once and rises slowly; slower arrivals are what
        :attr:`jitter` (inside :attr:`delay`) covers. 0 until ``add`` gets a ``received_at``.
        """
        return 0.0 if self._transit is None else self._transit

    @property
    def delay(self) -> float:
        """How far behind ``now`` :meth:`sample` renders (seconds)."""
        interval = _ASSUMED_INTERVAL if self._interval is None else self._interval
        raw = self.interp_ratio * interval + 2.0 * self._jitter
        return min(max(raw, self.min_delay), self.max_delay)

    @property
    def newest_time(self) -> float | None:
        """Local time of the newest snapshot held, or ``None`` when empty."""
        return self._times[-1] if self._times else None

    def add(
        self,
        local_time: float,
        state: Any,
        tick: int | None = None,
        *,
        received_at: float | None = None,
    ) -> None:
        """Add a snapshot taken at ``local_time`` (the sender's timestamp mapped to our clock).

        Snapshots may be added out of order; one with the same time as a held one replaces it.
        One more than ``max(1 s, 2 * max_delay)`` older than the newest held means the time
        base changed (for example the first clock-sync sample arrived): the held snapshots are
        dropped and the buffer starts again from this one.
        ``received_at`` (local arrival time), when given, lets the delay follow network
        jitter rather than only the sender's irregularity.
        """
        if not math.isfinite(local_time):
            raise ValueError(f"snapshot time must be finite, got {local_time!r}")
        if received_at is not None:
            self._observe_transit(received_at - local_time)
        times = self._times
        if times and local_time > times[-1]:  # the usual case: newer than all held
            self._observe(local_time - times[-1], received_at)
            times.append(local_time)
            self._states.append(state)
            self._ticks.append(tick)
            if len(times) > self.capacity:
                del times[0], self._states[0], self._ticks[0]
            return
        if times and local_time < times[-1] - max(_REBASE_GAP, 2 * self.max_delay):
            # Far older than the newest: no late packet is useful that late, so the time base
            # moved (the clock offset estimate changed, or the sender's clock restarted).
            # Start over rather than keep snapshots from another time base forever.
            logger.debug("%r: time base moved back %.3f s, restarting", self,
                         times[-1] - local_time)
            times.clear()
            self._states.clear()
            self._ticks.clear()
            if received_at is not None:
                self._transit = received_at - local_time
        i = bisect.bisect_left(times, local_time)
        if i < len(times) and times[i] == local_time:
            self._states[i] = state
            self._ticks[i] = tick
            return
        if i == len(times) and times:
            self._observe(local_time - times[-1], received_at)
        elif not times:
            self._newest_received = received_at
        times.insert(i, local_time)
        self._states.insert(i, state)
        self._ticks.insert(i, tick)
        if len(times) > self.capacity:
            del times[0], self._states[0], self._ticks[0]

    def _observe(self, gap: float, received_at: float | None) -> None:
        # A long pause (sender stalled, many losses) must not blow up the mean for long.
        cap = max(_MAX_INTERVAL_SAMPLE, self.max_delay)
        interval = min(gap, cap)
        prev_received = self._newest_received
        self._newest_received = received_at
        if self._interval is None:
            self._interval = interval
            return
        if received_at is not None and prev_received is not None:
            deviation = (received_at - prev_received) - gap  # RFC 3550 transit difference
        else:
            deviation = interval - self._interval
        self._jitter += _JITTER_GAIN * (min(abs(deviation), cap) - self._jitter)
        self._interval += _INTERVAL_GAIN * (interval - self._interval)

    def _observe_transit(self, transit: float) -> None:
        current = self._transit
        if current is None or transit < current:
            self._transit = transit
        else:
            self._transit = current + _TRANSIT_RISE_GAIN * (transit - current)

    def sample(self, now: float) -> Any:
        """The state to render at local time ``now``, or ``None`` before the first snapshot."""
        detail = self.sample_detail(now)
        return None if detail is None else detail.state

    def sample_detail(self, now: float) -> Sample | None:
        """Like :meth:`sample`, with the render time, tick and how the state was obtained."""
        times = self._times
        n = len(times)
        if n == 0:
            return None
        rt = now - self.transit - self.delay
        i = bisect.bisect_right(times, rt)  # times[i-1] <= rt < times[i]
        # Older snapshots are not needed again (the render time only moves forward), except
        # the last two, which extrapolation uses.
        drop = min(i - 1, n - 2)
        if drop > 0:
            del times[:drop], self._states[:drop], self._ticks[:drop]
            i -= drop
            n -= drop
        states, ticks = self._states, self._ticks
        if i == 0 or n == 1:
            k = 0 if i == 0 else n - 1
            return Sample(states[k], rt, _tick(ticks[k]), "hold")
        if times[i - 1] == rt:
            return Sample(states[i - 1], rt, _tick(ticks[i - 1]), "interpolate")
        if i < n:
            t0, t1 = times[i - 1], times[i]
            t = (rt - t0) / (t1 - t0)
            state = self.lerp(states[i - 1], states[i], t)
            return Sample(state, rt, _lerp_tick(ticks[i - 1], ticks[i], t), "interpolate")
        # Past the newest snapshot: extrapolate along the last two, up to the cap.
        over = rt - times[-1]
        ahead = min(over, self.max_extrapolation)
        if ahead <= 0:
            return Sample(states[-1], rt, _tick(ticks[-1]), "hold")
        t = 1.0 + ahead / (times[-1] - times[-2])
        state = self.lerp(states[-2], states[-1], t)
        mode: Literal["extrapolate", "hold"] = (
            "extrapolate" if over <= self.max_extrapolation else "hold"
        )
        return Sample(state, rt, _lerp_tick(ticks[-2], ticks[-1], t), mode)

    def clear(self) -> None:
        """Drop every snapshot and the rate/jitter estimates."""
        self._times.clear()
        self._states.clear()
        self._ticks.clear()
        self._interval = None
        self._jitter = 0.0
        self._newest_received = None

    def __repr__(self) -> str:
        return f"<InterpolationBuffer held={len(self._times)} delay={self.delay:.4f}>"


def _tick(tick: int | None) -> float | None:
    return None if tick is None else float(tick)


def _lerp_tick(a: int | None, b: int | None, t: float) -> float | None:
    if a is None or b is None:
        return _tick(b if t > 0 else a)
    return a + (b - a) * t
