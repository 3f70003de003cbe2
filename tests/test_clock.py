"""ClockSync: NTP-style offset/RTT, min-RTT filter, RFC 6298 smoothing, jitter, rejection."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplay.clock import ClockSync


def exchange(theta: float, t0: float, up: float, hold: float, down: float) -> tuple[float, ...]:
    """Timestamps of one heartbeat when remote = local + theta."""
    t1 = t0 + up + theta
    t2 = t1 + hold
    t3 = t2 - theta + down
    return t0, t1, t2, t3


def test_before_any_sample() -> None:
    clock = ClockSync()
    assert clock.offset == 0.0
    assert (clock.rtt, clock.rtt_last, clock.jitter, clock.rtt_var, clock.rtt_min) == (
        None, None, None, None, None)
    assert not clock.synced and clock.samples == 0
    assert clock.to_local(5.0) == 5.0


@pytest.mark.parametrize(
    ("theta", "up", "hold", "down", "offset", "rtt"),
    [
        (0.0, 0.01, 0.0, 0.01, 0.0, 0.02),
        (100.0, 0.025, 0.003, 0.025, 100.0, 0.05),  # remote processing time is not RTT
        (-3.5, 0.001, 0.0, 0.001, -3.5, 0.002),
        (10.0, 0.03, 0.0, 0.01, 10.01, 0.04),  # asymmetric path: error is half the asymmetry
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),  # zero RTT is allowed
    ],
)
def test_single_sample(
    theta: float, up: float, hold: float, down: float, offset: float, rtt: float
) -> None:
    clock = ClockSync()
    assert clock.on_sample(*exchange(theta, 50.0, up, hold, down))
    assert clock.offset == pytest.approx(offset)
    assert clock.rtt == pytest.approx(rtt)
    assert clock.rtt_last == pytest.approx(rtt)
    assert clock.rtt_var == pytest.approx(rtt / 2)
    assert clock.jitter == 0.0
    assert clock.to_local(clock.to_remote(7.0)) == pytest.approx(7.0)
    assert clock.to_local(60.0 + theta) == pytest.approx(60.0 + theta - offset)


def test_offset_from_min_rtt_sample_in_window() -> None:
    clock = ClockSync(window=3)
    clock.on_sample(*exchange(5.0, 0.0, 0.01, 0.0, 0.01))  # rtt 0.02, offset exact
    clock.on_sample(*exchange(5.0, 1.0, 0.20, 0.0, 0.01))  # queued: offset off by 0.095
    assert clock.offset == pytest.approx(5.0)
    clock.on_sample(*exchange(5.0, 2.0, 0.01, 0.0, 0.05))
    clock.on_sample(*exchange(5.0, 3.0, 0.01, 0.0, 0.03))  # first sample left the window
    assert clock.offset == pytest.approx(5.0 - 0.01)
    assert clock.rtt_min == pytest.approx(0.04)


def test_rfc6298_smoothing_and_jitter() -> None:
    clock = ClockSync()
    for i, rtt in enumerate([0.100, 0.200, 0.100]):
        clock.on_sample(*exchange(0.0, float(i), rtt / 2, 0.0, rtt / 2))
    # srtt: 0.1 -> 0.1125 -> 0.1109375; rttvar: 0.05 -> 0.0625 -> 0.05
    assert clock.rtt == pytest.approx(0.1109375)
    assert clock.rtt_var == pytest.approx(0.75 * 0.0625 + 0.25 * 0.0125)  # = 0.05
    assert clock.rtt_last == pytest.approx(0.1)
    # jitter: 0 -> 0.1/16 -> 0.00625 + (0.1 - 0.00625)/16
    assert clock.jitter == pytest.approx(0.00625 + (0.1 - 0.00625) / 16)
    assert clock.samples == 3


def test_steady_rtt_has_no_jitter() -> None:
    clock = ClockSync()
    for i in range(50):
        clock.on_sample(*exchange(2.0, float(i), 0.02, 0.001, 0.02))
    assert clock.jitter == pytest.approx(0.0)
    assert clock.rtt == pytest.approx(0.04)


@pytest.mark.parametrize(
    "sample",
    [
        (0.0, 5.0, 5.5, 0.1),  # remote held it 0.5 s but it was away 0.1 s: negative RTT
        (1.0, 5.0, 5.0, 0.5),  # local clock ran backwards
        (0.0, 5.0, 4.0, 2.0),  # remote clock ran backwards
        (0.0, math.nan, 1.0, 2.0),
        (0.0, 1.0, math.inf, 2.0),
        (0.0, "1", 1.0, 2.0),
    ],
)
def test_rejected_samples(sample: tuple[float, float, float, float]) -> None:
    clock = ClockSync()
    clock.on_sample(*exchange(1.0, 0.0, 0.01, 0.0, 0.01))
    before = (clock.offset, clock.rtt, clock.rtt_last, clock.jitter)
    assert clock.on_sample(*sample) is False
    assert clock.rejected == 1 and clock.samples == 1
    assert (clock.offset, clock.rtt, clock.rtt_last, clock.jitter) == before


def test_bad_window() -> None:
    with pytest.raises(ValueError):
        ClockSync(window=0)


micros = st.integers(min_value=0, max_value=2_000_000)


@given(st.integers(min_value=-10**12, max_value=10**12), st.integers(min_value=0, max_value=10**11),
       micros, micros, micros)
def test_offset_error_bounded_by_half_rtt(
    theta: int, t0: int, up: int, hold: int, down: int
) -> None:
    """Timestamps are built in whole microseconds, so they are exact and ordered as floats."""
    clock = ClockSync()
    t1 = t0 + up + theta
    t2 = t1 + hold
    t3 = t2 - theta + down
    assert clock.on_sample(t0 / 1e6, t1 / 1e6, t2 / 1e6, t3 / 1e6)
    assert clock.rtt == pytest.approx((up + down) / 1e6, abs=1e-6)
    assert abs(clock.offset - theta / 1e6) <= (clock.rtt or 0.0) / 2 + 1e-6


def test_float_rounding_of_zero_rtt_is_not_rejected() -> None:
    clock = ClockSync()
    assert clock.on_sample(0.0, 1e-6, 3e-6, 2e-6)  # (2e-6 - 0) - (3e-6 - 1e-6) rounds below 0
    assert clock.rtt == 0.0
    assert not clock.on_sample(0.0, 1e-6, 3e-6, 1.9e-6)  # 0.1 us negative: a real bad sample
