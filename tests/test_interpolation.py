"""InterpolationBuffer and lerp_state: edges, extrapolation cap, delay adaptation."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplay.interpolation import InterpolationBuffer, lerp_state


def fixed(delay: float = 0.1, **kwargs: Any) -> InterpolationBuffer:
    """A buffer whose delay is pinned, so render times are easy to reason about."""
    return InterpolationBuffer(min_delay=delay, max_delay=delay, **kwargs)


@pytest.mark.parametrize(
    ("a", "b", "t", "expected"),
    [
        (0, 10, 0.5, 5.0),
        (0.0, 1.0, 0.25, 0.25),
        (4, 4, 0.5, 4),  # equal ints stay ints
        (1, 3.0, 0.5, 2.0),
        (0, 10, 1.5, 15.0),  # extrapolation
        (True, False, 0.5, False),  # bools snap to the newer
        (True, False, 0.0, True),
        ("a", "b", 0.1, "b"),
        (None, 1, 0.5, 1),  # type change snaps
        (1, None, 0.5, None),
        ({"x": 0, "n": "p", "gone": 1}, {"x": 2, "n": "q", "new": [1]}, 0.5,
         {"x": 1.0, "n": "q", "new": [1]}),
        ([0, {"y": 2}], [4, {"y": 4}], 0.25, [1.0, {"y": 2.5}]),
        ((0, 0), (2, 4), 0.5, (1.0, 2.0)),
        ([1, 2], [1, 2, 3], 0.5, [1, 2, 3]),  # length change snaps
        ([1], (3,), 0.5, (3,)),
    ],
)
def test_lerp_state(a: Any, b: Any, t: float, expected: Any) -> None:
    result = lerp_state(a, b, t)
    assert result == expected
    assert type(result) is type(expected)


def test_lerp_state_keeps_int_type_inside_trees() -> None:
    result = lerp_state({"hp": 100, "x": 0}, {"hp": 100, "x": 1}, 0.5)
    assert type(result["hp"]) is int and type(result["x"]) is float


def test_empty_buffer() -> None:
    buf = InterpolationBuffer()
    assert buf.sample(10.0) is None
    assert buf.sample_detail(10.0) is None
    assert len(buf) == 0 and buf.newest_time is None


def test_single_snapshot_is_held() -> None:
    buf = fixed()
    buf.add(1.0, {"x": 1}, tick=7)
    for now in (0.0, 1.1, 50.0):
        detail = buf.sample_detail(now)
        assert detail is not None
        assert (detail.state, detail.tick, detail.mode) == ({"x": 1}, 7.0, "hold")


def test_interpolates_between_bracketing_snapshots() -> None:
    buf = fixed(0.1)
    buf.add(0.0, {"x": 0}, tick=0)
    buf.add(0.1, {"x": 10}, tick=6)
    buf.add(0.2, {"x": 30}, tick=12)
    detail = buf.sample_detail(0.15)  # render time 0.05
    assert detail is not None
    assert detail.render_time == pytest.approx(0.05)
    assert detail.state["x"] == pytest.approx(5.0)
    assert detail.tick == pytest.approx(3.0)
    assert detail.mode == "interpolate"
    assert buf.sample(0.25)["x"] == pytest.approx(20.0)


def test_exact_timestamps_return_the_snapshot() -> None:
    buf = fixed(0.5)
    states = [{"x": i, "s": str(i)} for i in range(3)]
    for i, s in enumerate(states):
        buf.add(float(i), s)
    assert buf.sample(0.5) is states[0]
    assert buf.sample(1.5) is states[1]
    assert buf.sample(2.5) is states[2]  # exactly the newest: no extrapolation


def test_before_oldest_holds_oldest() -> None:
    buf = fixed(0.1)
    buf.add(5.0, {"x": 5})
    buf.add(6.0, {"x": 6})
    detail = buf.sample_detail(1.0)
    assert detail is not None and detail.state == {"x": 5} and detail.mode == "hold"


def test_out_of_order_add() -> None:
    buf = fixed(0.1)
    buf.add(0.0, {"x": 0})
    buf.add(0.2, {"x": 20})
    buf.add(0.1, {"x": 100})  # late, but still ahead of the render time
    assert buf.sample(0.15)["x"] == pytest.approx(50.0)
    assert buf.sample(0.25)["x"] == pytest.approx(60.0)
    assert buf.send_interval == pytest.approx(0.2)  # late adds do not count as intervals


def test_same_time_replaces() -> None:
    buf = fixed(0.1)
    buf.add(1.0, {"x": 1})
    buf.add(1.0, {"x": 2})
    assert len(buf) == 1 and buf.sample(1.1) == {"x": 2}


def test_extrapolation_is_capped_then_holds() -> None:
    buf = fixed(0.1, max_extrapolation=0.25)
    buf.add(0.0, {"x": 0.0, "name": "a"})
    buf.add(0.1, {"x": 1.0, "name": "b"})
    detail = buf.sample_detail(0.3)  # render 0.2: 0.1 past the newest
    assert detail is not None and detail.mode == "extrapolate"
    assert detail.state == {"x": pytest.approx(2.0), "name": "b"}
    capped = buf.sample_detail(10.0)
    assert capped is not None and capped.mode == "hold"
    assert capped.state["x"] == pytest.approx(3.5)  # 0.25 s past, then held
    assert buf.sample(0.45)["x"] == pytest.approx(3.5)  # exactly at the cap


def test_no_extrapolation() -> None:
    buf = fixed(0.1, max_extrapolation=0.0)
    buf.add(0.0, {"x": 0.0})
    buf.add(0.1, {"x": 1.0})
    detail = buf.sample_detail(1.0)
    assert detail is not None and detail.state == {"x": 1.0} and detail.mode == "hold"


def test_custom_lerp_callback() -> None:
    calls: list[tuple[Any, Any, float]] = []

    def step(a: Any, b: Any, t: float) -> Any:
        calls.append((a, b, t))
        return a if t < 0.5 else b

    buf = fixed(0.1, lerp=step)
    buf.add(0.0, "a")
    buf.add(1.0, "b")
    assert buf.sample(0.3) == "a"
    assert buf.sample(0.9) == "b"
    assert [c[2] for c in calls] == [pytest.approx(0.2), pytest.approx(0.8)]


def test_old_snapshots_are_pruned_and_capacity_bounded() -> None:
    buf = fixed(0.1, capacity=8)
    for i in range(20):
        buf.add(i * 0.05, {"x": i})
    assert len(buf) == 8
    buf.sample(0.9)  # render 0.8 = snapshot 16
    assert len(buf) == 4  # 16..19 still needed
    buf.sample(100.0)
    assert len(buf) == 2  # the last two stay for extrapolation


def feed(buf: InterpolationBuffer, hz: float, n: int, jitter: float = 0.0,
         seed: int = 1) -> None:
    rnd = random.Random(seed)
    for i in range(n):
        sent = i / hz
        buf.add(sent, {"i": i}, tick=i, received_at=sent + 0.03 + rnd.uniform(0, jitter))


@pytest.mark.parametrize(
    ("hz", "jitter", "kwargs", "low", "high"),
    [
        (20, 0.0, {}, 0.1, 0.1),  # 2 x 50 ms
        (60, 0.0, {}, 0.05, 0.05),  # 2 x 16.7 ms is below min_delay
        (60, 0.0, {"min_delay": 0.0}, 2 / 60, 2 / 60),
        (20, 0.03, {}, 0.11, 0.14),  # jitter adds about 2 x 10 ms
        (60, 0.03, {"min_delay": 0.0}, 0.04, 0.06),
        (2, 0.0, {}, 0.5, 0.5),  # 2 Hz: capped at max_delay
    ],
)
def test_delay_adapts_to_rate_and_jitter(
    hz: float, jitter: float, kwargs: dict[str, Any], low: float, high: float
) -> None:
    buf = InterpolationBuffer(**kwargs)
    assert buf.delay == pytest.approx(max(0.1, buf.min_delay))  # 20 Hz assumed at first
    feed(buf, hz, 300, jitter)
    assert low - 1e-9 <= buf.delay <= high + 1e-9
    assert buf.send_interval == pytest.approx(min(1 / hz, buf.max_delay))


def test_jitter_without_arrival_times_uses_send_interval_deviation() -> None:
    steady, shaky = InterpolationBuffer(), InterpolationBuffer()
    rnd = random.Random(3)
    t = 0.0
    for i in range(200):
        steady.add(i * 0.05, i)
        t += 0.05 + rnd.uniform(-0.02, 0.02)
        shaky.add(t, i)
    assert steady.jitter == pytest.approx(0.0, abs=1e-9) and steady.delay == pytest.approx(0.1)
    assert shaky.jitter > 0.005 and shaky.delay > steady.delay


def test_loss_does_not_look_like_jitter_with_arrival_times() -> None:
    buf = InterpolationBuffer(min_delay=0.0)
    for i in range(200):
        if i % 10 == 5:
            continue  # lost
        buf.add(i / 20, i, received_at=i / 20 + 0.04)
    assert buf.jitter == pytest.approx(0.0)


def test_clear() -> None:
    buf = InterpolationBuffer()
    feed(buf, 60, 10, 0.01)
    buf.clear()
    assert len(buf) == 0 and buf.send_interval is None and buf.jitter == 0.0
    assert buf.sample(1.0) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"min_delay": -0.1}, {"min_delay": 0.6}, {"max_delay": math.inf}, {"interp_ratio": 0},
     {"max_extrapolation": -1}, {"capacity": 1}],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        InterpolationBuffer(**kwargs)  # type: ignore[arg-type]


def test_non_finite_time_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        InterpolationBuffer().add(math.nan, {})


@given(
    st.lists(st.floats(0.005, 0.2), min_size=2, max_size=30),
    st.floats(-5, 5),
    st.floats(0, 1),
)
def test_linear_motion_is_reproduced(gaps: list[float], velocity: float, frac: float) -> None:
    """Irregular snapshots of x = v * t render x = v * render_time, within the cap too."""
    buf = fixed(0.1, max_extrapolation=0.25)
    t = 0.0
    for gap in gaps:
        t += gap
        buf.add(t, {"x": velocity * t})
    first = gaps[0]
    render = first + frac * (t + 0.25 - first)  # from the oldest to the extrapolation cap
    assert buf.sample(render + 0.1)["x"] == pytest.approx(velocity * render, abs=1e-6)


def test_long_pause_counts_as_one_second_interval() -> None:
    buf = InterpolationBuffer()
    buf.add(0.0, 0)
    buf.add(0.05, 1)
    buf.add(100.0, 2)  # the sender stalled for 100 s
    interval = 0.05 + (1.0 - 0.05) / 8
    jitter = (1.0 - 0.05) / 16
    assert buf.send_interval == pytest.approx(interval)
    assert buf.delay == pytest.approx(2 * interval + 2 * jitter)


def test_time_base_moving_back_restarts_the_buffer() -> None:
    """Before clock sync, sender times are on the sender's clock; then they jump back."""
    buf = fixed(0.1)
    for i in range(10):
        buf.add(5000.0 + i * 0.05, {"x": i})  # remote clock, offset not known yet
    buf.add(10.0, {"x": 100})  # now mapped onto our clock
    buf.add(10.05, {"x": 101})
    assert len(buf) == 2
    assert buf.sample(10.125)["x"] == pytest.approx(100.5)


def test_late_add_within_a_second_is_kept() -> None:
    buf = fixed(0.1)
    buf.add(10.0, {"x": 10})
    buf.add(9.2, {"x": 9})
    assert len(buf) == 2


def test_render_time_counts_from_arrival_so_latency_does_not_eat_the_buffer() -> None:
    # 30 Hz snapshots that arrive 100 ms after they were sent (one-way latency, or a clock
    # offset estimate that is off by that much). Rendering must still interpolate between
    # received snapshots, `delay` behind the newest arrival, never extrapolate past them.
    buf = InterpolationBuffer()
    interval, transit = 1 / 30, 0.1
    for k in range(30):
        buf.add(k * interval, {"x": float(k)}, k, received_at=k * interval + transit)
    now = 29 * interval + transit  # the moment the newest snapshot arrived
    detail = buf.sample_detail(now)
    assert detail is not None and detail.mode == "interpolate"
    assert buf.transit == pytest.approx(transit)
    assert detail.render_time == pytest.approx(now - transit - buf.delay)
    assert 29 - detail.state["x"] == pytest.approx(buf.delay / interval)


def test_transit_follows_the_fast_arrivals_and_rises_slowly() -> None:
    buf = InterpolationBuffer()
    buf.add(0.0, {"x": 0.0}, received_at=0.05)
    buf.add(0.1, {"x": 1.0}, received_at=0.13)  # a faster arrival: adopted at once
    assert buf.transit == pytest.approx(0.03)
    buf.add(0.2, {"x": 2.0}, received_at=0.53)  # one late packet barely moves it
    assert 0.03 < buf.transit < 0.05
    for k in range(3, 200):  # the path really got slower: adopted within a couple of seconds
        buf.add(k * 0.1, {"x": float(k)}, received_at=k * 0.1 + 0.2)
    assert buf.transit == pytest.approx(0.2, abs=0.01)
