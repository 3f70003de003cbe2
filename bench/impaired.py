"""Bad network through the link conditioner: 50 ms one way and 5% loss in each direction.

Peer ``a`` sends a 200-byte snapshot (unreliable) and a small event (reliable) at 30 Hz for a
few seconds, optionally after queueing a 1 MiB reliable transfer on the events channel. Peer
``b`` samples snapshot *staleness* (now minus the send time of the newest snapshot it holds)
every 10 ms, and records each event's one-way latency. Target (issue 5): staleness p99 <= 2 x the
one-way delay + one tick, unchanged by the 1 MiB transfer.
"""

from __future__ import annotations

import asyncio
import time

from bench.harness import Benchmark, Context, Row, Target, percentile, run_child, run_loop
from bench.link import FACTORIES
from bench.pair import _STAMP, _sut, age, stamped

ONE_WAY_MS = 50.0
LOSS = 0.05
TICK_HZ = 30.0
BULK_BYTES = 1 << 20
BULK_CHUNK = 16 << 10
STALENESS_TARGET_MS = 2 * ONE_WAY_MS + 1000.0 / TICK_HZ


def impaired_child(sut: str, loop: str, seconds: float, bulk: bool) -> dict[str, float]:
    """Staleness p99 and reliable p99 of ``sut`` under the conditioner, with or without bulk."""
    from netplay.conditioner import ConditionerConfig

    config = ConditionerConfig(latency_ms=ONE_WAY_MS, loss=LOSS, seed=5)
    prefix = f"impaired.{sut}{'_bulk' if bulk else ''}"

    async def main() -> dict[str, float]:
        ev = asyncio.get_running_loop()
        newest = [0.0]  # send time of the newest snapshot received
        snapshots = [0]
        event_latency: list[float] = []
        bulk_done = [0.0]
        bulk_received = [0]

        def on_state(data: bytes) -> None:
            snapshots[0] += 1
            newest[0] = max(newest[0], float(_STAMP.unpack_from(data)[0]))

        def on_event(data: bytes) -> None:
            if data[8:9] == b"B":
                bulk_received[0] += len(data)
                if bulk_received[0] >= BULK_BYTES:
                    bulk_done[0] = time.perf_counter()
            else:
                event_latency.append(age(data))

        async with _sut(sut)(config) as link:
            link.on_state(on_state)
            link.on_event(on_event)
            start = time.perf_counter()
            newest[0] = start  # before the first snapshot arrives, staleness runs from here
            if bulk:
                for _ in range(BULK_BYTES // BULK_CHUNK):
                    link.send_event(stamped(BULK_CHUNK, b"B"))
            staleness: list[float] = []
            t0 = ev.time()
            ticks = int(seconds * TICK_HZ)
            sample_at = t0
            for i in range(ticks):
                link.send_state(stamped())
                link.send_event(stamped(50, b"E"))
                next_tick = t0 + (i + 1) / TICK_HZ
                while sample_at < next_tick:  # sample staleness every 10 ms meanwhile
                    await asyncio.sleep(max(0.0, sample_at - ev.time()))
                    staleness.append(time.perf_counter() - newest[0])
                    sample_at += 0.010
            deadline = ev.time() + 30.0
            while len(event_latency) < ticks and ev.time() < deadline:
                await asyncio.sleep(0.02)
            # Events still missing count with the time they have waited (a lower bound).
            waited = time.perf_counter() - start
            event_latency += [waited] * (ticks - len(event_latency))
        figures = {
            f"{prefix}_staleness_p99_ms": percentile(staleness, 99) * 1000,
            f"{prefix}_reliable_p99_ms": percentile(event_latency, 99) * 1000,
            f"{prefix}_state_delivered_pct": 100.0 * snapshots[0] / ticks,
        }
        if bulk:
            figures[f"{prefix}_transfer_s"] = (bulk_done[0] - start) if bulk_done[0] else waited
        return figures

    result: dict[str, float] = run_loop(loop, main)
    return result


def run_impaired(ctx: Context) -> dict[str, float]:
    figures: dict[str, float] = {}
    for sut in FACTORIES:
        for bulk in (False,) if ctx.quick else (False, True):  # 1 MiB takes ~15 s
            figures.update(ctx.attempt(
                f"impaired {sut}{' + 1 MiB' if bulk else ''}",
                lambda sut=sut, bulk=bulk: run_child(  # type: ignore[misc]
                    "bench.impaired:impaired_child", sut=sut, loop="uvloop",
                    seconds=4.0 if ctx.quick else 10.0, bulk=bulk)))
    return figures


def _rows(sut: str, label: str) -> tuple[Row, ...]:
    stale = Target("<=", STALENESS_TARGET_MS)
    return (
        Row(f"{label} staleness p99, 50ms/5%", f"impaired.{sut}_staleness_p99_ms", "ms",
            target=stale),
        Row(f"{label} reliable p99, 50ms/5%", f"impaired.{sut}_reliable_p99_ms", "ms"),
        Row(f"{label} snapshots delivered, 50ms/5%", f"impaired.{sut}_state_delivered_pct", "%"),
        Row(f"{label} staleness p99 + 1 MiB", f"impaired.{sut}_bulk_staleness_p99_ms", "ms",
            f"impaired.{sut}_staleness_p99_ms", stale),
        Row(f"{label} reliable p99 + 1 MiB", f"impaired.{sut}_bulk_reliable_p99_ms", "ms",
            f"impaired.{sut}_reliable_p99_ms"),
        Row(f"{label} 1 MiB transfer time", f"impaired.{sut}_bulk_transfer_s", "s"),
    )


BENCHMARKS = [
    Benchmark("impaired", run_impaired, runs=1, rows=(
        *_rows("aiortc", "raw aiortc"), *_rows("netplay_async", "netplay"))),
]
