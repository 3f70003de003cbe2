"""RateMeter rolling rates, StatsTracker and PeerStats."""

from __future__ import annotations

import dataclasses

import pytest

from netplay.clock import ClockSync
from netplay.interpolation import InterpolationBuffer
from netplay.snapshots import SnapshotBuffer
from netplay.stats import PeerStats, RateMeter, StatsTracker


def test_rate_meter_empty() -> None:
    meter = RateMeter()
    assert meter.rate(5.0) == 0.0
    assert meter.total == 0.0


@pytest.mark.parametrize(("hz", "amount"), [(100, 1), (30, 300), (7, 1), (1000, 1200)])
def test_rate_meter_steady_rate(hz: int, amount: int) -> None:
    meter = RateMeter(window=1.0)
    start = 1000.0
    for i in range(5 * hz):
        now = start + i / hz
        meter.add(now, amount)
        if i > hz:  # after the first window, every reading is within one slice
            assert meter.rate(now) == pytest.approx(hz * amount, rel=0.12)
    assert meter.total == 5 * hz * amount


def test_rate_meter_decays_to_zero_and_restarts() -> None:
    meter = RateMeter(window=1.0)
    for i in range(100):
        meter.add(i / 100, 10)
    assert meter.rate(1.0) == pytest.approx(1000, rel=0.12)
    assert meter.rate(1.55) == pytest.approx(450, rel=0.25)  # half the window has no data
    assert meter.rate(2.5) == 0.0
    meter.add(10.0, 5)
    assert meter.rate(10.5) == pytest.approx(5 / 0.9)  # 5 over the window (9 slices + now)
    assert meter.rate(100.0) == 0.0


def test_rate_meter_early_readings_use_elapsed_time() -> None:
    meter = RateMeter(window=10.0)
    for i in range(20):
        meter.add(50.0 + i * 0.1, 1)
    assert meter.rate(52.0) == pytest.approx(10.0)


def test_rate_meter_time_going_backwards_counts_as_now() -> None:
    meter = RateMeter(window=1.0)
    meter.add(5.0, 1)
    meter.add(4.0, 1)
    assert meter.total == 2
    assert meter.rate(5.0) > 0


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"window": float("inf")}, {"buckets": 0}])
def test_rate_meter_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateMeter(**kwargs)  # type: ignore[arg-type]


def test_tracker_alone() -> None:
    tracker = StatsTracker()
    stats = tracker.snapshot(0.0)
    assert stats.rtt_ms is None and stats.clock_offset_ms is None
    assert stats.interp_delay_ms is None
    assert (stats.loss, stats.snapshots_received, stats.bad_packets) == (0.0, 0, 0)
    assert stats.bytes_in_per_s == 0.0 and stats.bytes_out == 0


def test_tracker_full_picture() -> None:
    tracker = StatsTracker()
    clock, buffer, interp = ClockSync(), SnapshotBuffer(), InterpolationBuffer()
    clock.on_sample(0.0, 10.02, 10.02, 0.04)  # rtt 40 ms, remote 10 s ahead
    for i in range(60):  # 30 Hz for 2 s, every 10th snapshot lost
        now = i / 30
        tracker.on_send(now, 100)
        if i % 10 == 9:
            continue
        tracker.on_receive(now, 300)
        tracker.on_snapshot(now)
        buffer.push(i, i, now + 10.0, now)
        interp.add(now, {"i": i})
    tracker.on_bad_packet()
    tracker.on_delta_saved(250)
    tracker.on_delta_saved(-10)
    stats = tracker.snapshot(59 / 30, clock=clock, buffer=buffer, interp=interp)
    assert stats.rtt_ms == pytest.approx(40.0)
    assert stats.rtt_last_ms == pytest.approx(40.0)
    assert stats.jitter_ms == 0.0
    assert stats.clock_offset_ms == pytest.approx(10000.0)
    assert stats.loss == pytest.approx(5 / 59)
    assert (stats.snapshots_received, stats.snapshots_lost) == (54, 5)
    assert (stats.duplicates, stats.stale, stats.bad_packets) == (0, 0, 1)
    assert stats.bytes_out_per_s == pytest.approx(3000, rel=0.12)
    assert stats.packets_out_per_s == pytest.approx(30, rel=0.12)
    assert stats.bytes_in_per_s == pytest.approx(300 * 27, rel=0.15)
    assert stats.packets_in_per_s == pytest.approx(27, rel=0.15)
    assert stats.snapshot_rate_hz == pytest.approx(27, rel=0.15)
    assert stats.interp_delay_ms == pytest.approx(interp.delay * 1000)
    assert stats.delta_bytes_saved == 240
    assert (stats.bytes_in, stats.bytes_out) == (54 * 300, 60 * 100)
    line = stats.summary()
    assert "rtt 40.0 ms" in line and "loss 8.5%" in line and "kB/s" in line


def test_unsynced_clock_reports_no_offset() -> None:
    stats = StatsTracker().snapshot(1.0, clock=ClockSync())
    assert stats.clock_offset_ms is None and stats.rtt_ms is None
    assert "rtt - ms" in stats.summary()


def test_peer_stats_is_frozen_and_documented() -> None:
    stats = StatsTracker().snapshot(0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.loss = 1.0  # type: ignore[misc]
    names = {f.name for f in dataclasses.fields(PeerStats)}
    assert {"rtt_ms", "rtt_last_ms", "jitter_ms", "loss", "snapshots_received", "duplicates",
            "stale", "bad_packets", "bytes_in_per_s", "bytes_out_per_s", "packets_in_per_s",
            "packets_out_per_s", "snapshot_rate_hz", "interp_delay_ms", "clock_offset_ms",
            "delta_bytes_saved"} <= names
