"""Bad networks through netplay's link conditioner (:mod:`netplay.conditioner`).

Three benchmarks, each run for raw aiortc (the baseline, conditioned once per direction) and
for netplay's async facade (conditioned on both ends of a direction, each end getting half:
see :func:`bench.link.split_between_ends`), in child processes on uvloop:

- ``impaired``: 50 ms one way and 5% loss per direction. Peer ``a`` sends a 200-byte snapshot
  (unreliable) and a 50-byte event (reliable, "events") at 30 Hz; peer ``b`` samples snapshot
  *staleness* (now minus the send time of the newest snapshot it holds) every 10 ms and
  records each event's one-way latency. Then the same with a 1 MiB transfer always in flight
  on a third reliable channel, "bulk" (raw aiortc: its own SCTP stream, id 2; netplay:
  ``ChannelConfig.reliable("bulk", priority=-1)``), sent as 64 messages of 16 KiB; when one
  MiB has arrived the next is queued. Its figure is the time of the first MiB.
- ``impaired_loss10``: about 10% loss each way: 100 ms one way and 9.75% loss per direction,
  which for netplay is 50 ms and 5% on each mesh. 10,000 events (50 bytes, reliable, ordered)
  at 100 a second (3-4 per 30 Hz tick, next to the snapshots, 100 s); the share delivered
  (waiting up to 60 s after the last send) and their p99.
- ``formation_loss``: 50 ms one way and 20% loss per direction. Raw aiortc: createOffer to
  both channels open; netplay: two fresh meshes in a real lobby, from ``join()`` to both
  having seen ``PeerJoined``. p95 over 20 trials (each trial seeded differently).

Events still missing at the end count with the time they have waited so far (a lower bound
of their latency).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from bench.harness import Benchmark, Context, Row, Target, percentile, run_child, run_loop
from bench.link import FACTORIES, AiortcLink, end_conditioners, lobby_url, netplay_channels
from bench.pair import _STAMP, _sut, age, stamped

ONE_WAY_MS = 50.0
LOSS = 0.05
TICK_HZ = 30.0
EVENT_BYTES = 50
BULK_BYTES = 1 << 20
BULK_CHUNK = 16 << 10
STALENESS_TARGET_MS = 2 * ONE_WAY_MS + 1000.0 / TICK_HZ
RELIABLE_RATIO_TARGET = 0.6
BULK_EVENT_P99_TARGET_MS = 250.0
TRANSFER_RATIO_TARGET = 1.0
LOSS10_ONE_WAY_MS = 100.0
LOSS10 = 1.0 - 0.95 ** 2
"""Per direction: 5% on each of netplay's two ends."""
LOSS10_EVENTS = 10_000
LOSS10_RATE = 100.0
"""Events per second (a game's events, a few per tick)."""
LOSS10_P99_TARGET_MS = 400.0
FORMATION_LOSS = 0.20
FORMATION_TRIALS = 20
FORMATION_P95_TARGET_MS = 2000.0
_ID = struct.Struct("!I")


def _open(sut: str, config: Any, *, bulk: bool = False, seed: int = 1) -> Any:
    """Open ``sut``'s link; netplay with its default ``send_rate_hz`` (a game's config)."""
    kwargs: dict[str, Any] = {"bulk": bulk, "seed": seed}
    if sut.startswith("netplay"):
        from netplay import MeshConfig

        kwargs["send_rate_hz"] = MeshConfig.__dataclass_fields__["send_rate_hz"].default
    return _sut(sut)(config, **kwargs)


def impaired_child(sut: str, loop: str, seconds: float, bulk: bool, prefix: str = "impaired",
                   one_way_ms: float = ONE_WAY_MS, loss: float = LOSS,
                   events: int | None = None, drain: float = 30.0, seed: int = 5
                   ) -> dict[str, float]:
    """Staleness, event latency and delivery of ``sut`` under the conditioner.

    ``events``: how many events in all, spread evenly over the ticks (default one per tick).
    With ``bulk``, a 1 MiB transfer is in flight on the "bulk" channel the whole time.
    """
    from netplay.conditioner import ConditionerConfig

    config = ConditionerConfig(latency_ms=one_way_ms, loss=loss, seed=seed)
    key = f"{prefix}.{sut}{'_bulk' if bulk else ''}"

    async def main() -> dict[str, float]:
        ev = asyncio.get_running_loop()
        newest = [0.0]  # send time of the newest snapshot received
        snapshots = [0]
        latency: dict[int, float] = {}
        sent_at: list[float] = []
        order = {"next": 0, "out_of_order": 0, "duplicates": 0}
        bulk_received = [0]
        bulk_done: list[float] = []  # arrival time of each whole MiB

        def on_state(data: bytes) -> None:
            snapshots[0] += 1
            newest[0] = max(newest[0], float(_STAMP.unpack_from(data)[0]))

        def on_event(data: bytes) -> None:
            (number,) = _ID.unpack_from(data, _STAMP.size)
            if number in latency:
                order["duplicates"] += 1
                return
            latency[number] = age(data)
            if number != order["next"]:
                order["out_of_order"] += 1
            order["next"] = number + 1

        def on_bulk(data: bytes) -> None:
            bulk_received[0] += len(data)
            while bulk_received[0] >= (len(bulk_done) + 1) * BULK_BYTES:
                bulk_done.append(time.perf_counter())

        def send_mib() -> None:
            for _ in range(BULK_BYTES // BULK_CHUNK):
                link.send_bulk(bytes(BULK_CHUNK))

        async with _open(sut, config, bulk=bulk, seed=seed) as link:
            link.on_state(on_state)
            link.on_event(on_event)
            ticks = int(seconds * TICK_HZ)
            total = ticks if events is None else events
            start = time.perf_counter()
            newest[0] = start  # before the first snapshot arrives, staleness runs from here
            queued_mib = 0
            if bulk:
                link.on_bulk(on_bulk)
                send_mib()
                queued_mib = 1
            staleness: list[float] = []
            t0 = ev.time()
            sample_at = t0
            for i in range(ticks):
                link.send_state(stamped())
                for number in range(i * total // ticks, (i + 1) * total // ticks):
                    sent_at.append(time.perf_counter())
                    link.send_event(stamped(EVENT_BYTES, _ID.pack(number)))
                if bulk and len(bulk_done) >= queued_mib:  # keep one MiB in flight
                    send_mib()
                    queued_mib += 1
                next_tick = t0 + (i + 1) / TICK_HZ
                while sample_at < next_tick:  # sample staleness every 10 ms meanwhile
                    await asyncio.sleep(max(0.0, sample_at - ev.time()))
                    staleness.append(time.perf_counter() - newest[0])
                    sample_at += 0.010
            window_end = time.perf_counter()
            deadline = ev.time() + drain + (120.0 if bulk else 0.0)
            while (len(latency) < total or (bulk and not bulk_done)) and ev.time() < deadline:
                await asyncio.sleep(0.02)
            now = time.perf_counter()
        # Events still missing count with the time they have waited (a lower bound).
        waits = list(latency.values()) + [now - sent_at[n] for n in range(total)
                                          if n not in latency]
        figures = {
            f"{key}_staleness_p99_ms": percentile(staleness, 99) * 1000,
            f"{key}_reliable_p50_ms": percentile(waits, 50) * 1000,
            f"{key}_reliable_p99_ms": percentile(waits, 99) * 1000,
            f"{key}_reliable_max_ms": max(waits) * 1000,
            f"{key}_state_delivered_pct": 100.0 * snapshots[0] / ticks,
            f"{key}_events_delivered_pct": 100.0 * len(latency) / total,
            f"{key}_events_out_of_order": float(order["out_of_order"]),
            f"{key}_events_duplicates": float(order["duplicates"]),
        }
        if bulk:
            figures[f"{key}_transfer_s"] = (bulk_done[0] - start) if bulk_done else now - start
            figures[f"{key}_mib_in_window"] = float(
                sum(1 for t in bulk_done if t <= window_end))
        return figures

    result: dict[str, float] = run_loop(loop, main)
    return result


def formation_child(sut: str, loop: str, trials: int, one_way_ms: float = ONE_WAY_MS,
                    loss: float = FORMATION_LOSS, timeout: float = 60.0) -> dict[str, float]:
    """Connection set-up under loss, ``trials`` times: p50, p95, max and failures (ms).

    Raw aiortc: createOffer to both channels open (signalling in-process). netplay: two fresh
    ``Mesh``es, ``a`` hosts, ``b`` joins through the lobby; from the ``join()`` call to both
    having seen ``PeerJoined`` (the lobby's WebSocket is not conditioned). A trial that does not
    connect within ``timeout`` counts as ``timeout`` and as a failure.
    """
    from netplay.conditioner import ConditionerConfig

    config = ConditionerConfig(latency_ms=one_way_ms, loss=loss)

    async def aiortc_trial(seed: int) -> float:
        link = AiortcLink(config, seed=seed)
        try:
            return await link.connect(timeout=timeout)
        finally:
            await link.close()

    async def netplay_trial(seed: int) -> float:
        from netplay import Mesh, MeshConfig, PeerJoined

        url = lobby_url()
        ends = end_conditioners(config, seed)
        a = Mesh(MeshConfig(lobby_url=url, name="a", ice_host_addresses=("127.0.0.1",),
                            conditioner=ends[0], channels=netplay_channels(False)))
        b = Mesh(MeshConfig(lobby_url=url, name="b", ice_host_addresses=("127.0.0.1",),
                            conditioner=ends[1], channels=netplay_channels(False)))
        async with a, b:
            info = await a.host(game="bench", public=False)

            async def joined(mesh: Mesh) -> float:
                await mesh.wait_for(PeerJoined, timeout=timeout)
                return time.perf_counter()

            waits = [asyncio.create_task(joined(m)) for m in (a, b)]
            start = time.perf_counter()
            await b.join(info.code)
            done = await asyncio.gather(*waits)
            return max(done) - start

    async def main() -> dict[str, float]:
        times, failures = [], 0
        for i in range(trials):
            seed = 1000 + 2 * i
            try:
                times.append(await (netplay_trial(seed) if sut.startswith("netplay")
                                    else aiortc_trial(seed)))
            except TimeoutError:
                times.append(timeout)
                failures += 1
        prefix = f"formation_loss.{sut}"
        return {f"{prefix}_p50_ms": percentile(times, 50) * 1000,
                f"{prefix}_p95_ms": percentile(times, 95) * 1000,
                f"{prefix}_max_ms": max(times) * 1000,
                f"{prefix}_failures": float(failures)}

    result: dict[str, float] = run_loop(loop, main)
    return result


def run_impaired(ctx: Context) -> dict[str, float]:
    figures: dict[str, float] = {}
    for bulk in (False,) if ctx.quick else (False, True):
        for sut in FACTORIES:
            figures.update(ctx.attempt(
                f"impaired {sut}{' + 1 MiB' if bulk else ''}",
                lambda sut=sut, bulk=bulk: run_child(  # type: ignore[misc]
                    "bench.impaired:impaired_child", timeout=400, sut=sut, loop="uvloop",
                    seconds=4.0 if ctx.quick else 20.0 if not bulk else 10.0, bulk=bulk)))
    return figures


def run_loss10(ctx: Context) -> dict[str, float]:
    figures: dict[str, float] = {}
    for sut in FACTORIES:
        figures.update(ctx.attempt(
            f"impaired_loss10 {sut}", lambda sut=sut: run_child(  # type: ignore[misc]
                "bench.impaired:impaired_child", timeout=400, sut=sut, loop="uvloop",
                seconds=(LOSS10_EVENTS // 10 if ctx.quick else LOSS10_EVENTS) / LOSS10_RATE,
                bulk=False, prefix="impaired_loss10", one_way_ms=LOSS10_ONE_WAY_MS, loss=LOSS10,
                events=LOSS10_EVENTS // 10 if ctx.quick else LOSS10_EVENTS, drain=60.0)))
    return figures


def run_formation(ctx: Context) -> dict[str, float]:
    figures: dict[str, float] = {}
    for sut in FACTORIES:
        figures.update(ctx.attempt(
            f"formation_loss {sut}", lambda sut=sut: run_child(  # type: ignore[misc]
                "bench.impaired:formation_child", timeout=1800, sut=sut, loop="uvloop",
                trials=5 if ctx.quick else FORMATION_TRIALS)))
    return figures


def _impaired_rows() -> tuple[Row, ...]:
    raw, np = "impaired.aiortc", "impaired.netplay_async"
    stale = Target("<=", STALENESS_TARGET_MS)
    return (
        Row("raw aiortc staleness p99, 50ms/5%", f"{raw}_staleness_p99_ms", "ms", target=stale),
        Row("raw aiortc reliable p99, 50ms/5%", f"{raw}_reliable_p99_ms", "ms"),
        Row("raw aiortc snapshots delivered, 50ms/5%", f"{raw}_state_delivered_pct", "%"),
        Row("netplay staleness p99, 50ms/5%", f"{np}_staleness_p99_ms", "ms",
            f"{raw}_staleness_p99_ms", stale),
        Row("netplay reliable p99, 50ms/5%", f"{np}_reliable_p99_ms", "ms",
            f"{raw}_reliable_p99_ms", Target("<=", RELIABLE_RATIO_TARGET, True),
            "impaired.ratio_reliable_p99_vs_aiortc"),
        Row("netplay reliable p50, 50ms/5%", f"{np}_reliable_p50_ms", "ms",
            f"{raw}_reliable_p50_ms"),
        Row("netplay snapshots delivered, 50ms/5%", f"{np}_state_delivered_pct", "%",
            f"{raw}_state_delivered_pct"),
        Row("raw aiortc staleness p99 + 1 MiB", f"{raw}_bulk_staleness_p99_ms", "ms",
            f"{raw}_staleness_p99_ms", stale),
        Row("raw aiortc event p99 + 1 MiB on 2nd stream", f"{raw}_bulk_reliable_p99_ms", "ms",
            f"{raw}_reliable_p99_ms"),
        Row("raw aiortc 1 MiB transfer time, 50ms/5%", f"{raw}_bulk_transfer_s", "s"),
        Row("netplay staleness p99 + 1 MiB", f"{np}_bulk_staleness_p99_ms", "ms",
            f"{raw}_bulk_staleness_p99_ms", stale),
        Row("netplay event p99 + 1 MiB on bulk lane (prio -1)", f"{np}_bulk_reliable_p99_ms",
            "ms", f"{raw}_bulk_reliable_p99_ms", Target("<=", BULK_EVENT_P99_TARGET_MS)),
        Row("netplay 1 MiB transfer time, 50ms/5%", f"{np}_bulk_transfer_s", "s",
            f"{raw}_bulk_transfer_s", Target("<=", TRANSFER_RATIO_TARGET, True),
            "impaired.ratio_transfer_vs_aiortc"),
        Row("netplay MiB delivered in the 10 s window", f"{np}_bulk_mib_in_window", "",
            f"{raw}_bulk_mib_in_window"),
    )


def _loss10_rows() -> tuple[Row, ...]:
    raw, np = "impaired_loss10.aiortc", "impaired_loss10.netplay_async"
    return (
        Row("raw aiortc events delivered, ~10% loss", f"{raw}_events_delivered_pct", "%"),
        Row("raw aiortc event p99, ~10% loss", f"{raw}_reliable_p99_ms", "ms"),
        Row("raw aiortc staleness p99, ~10% loss", f"{raw}_staleness_p99_ms", "ms"),
        Row("netplay events delivered, ~10% loss", f"{np}_events_delivered_pct", "%",
            f"{raw}_events_delivered_pct", Target(">=", 100.0)),
        Row("netplay event p99, ~10% loss", f"{np}_reliable_p99_ms", "ms",
            f"{raw}_reliable_p99_ms", Target("<=", LOSS10_P99_TARGET_MS),
            "impaired_loss10.ratio_reliable_p99_vs_aiortc"),
        Row("netplay event p50, ~10% loss", f"{np}_reliable_p50_ms", "ms",
            f"{raw}_reliable_p50_ms"),
        Row("netplay staleness p99, ~10% loss", f"{np}_staleness_p99_ms", "ms",
            f"{raw}_staleness_p99_ms"),
    )


def _formation_rows() -> tuple[Row, ...]:
    raw, np = "formation_loss.aiortc", "formation_loss.netplay_async"
    return (
        Row("raw aiortc pair setup p95, 50ms/20%", f"{raw}_p95_ms", "ms"),
        Row("raw aiortc pair setup p50, 50ms/20%", f"{raw}_p50_ms", "ms"),
        Row("netplay formation p95 (lobby, PeerJoined), 50ms/20%", f"{np}_p95_ms", "ms",
            f"{raw}_p95_ms", Target("<=", FORMATION_P95_TARGET_MS),
            "formation_loss.ratio_p95_vs_aiortc"),
        Row("netplay formation p50, 50ms/20%", f"{np}_p50_ms", "ms", f"{raw}_p50_ms"),
        Row("netplay formation max, 50ms/20%", f"{np}_max_ms", "ms", f"{raw}_max_ms"),
        Row("netplay formation trials that timed out", f"{np}_failures", "",
            f"{raw}_failures"),
    )


BENCHMARKS = [
    Benchmark("impaired", run_impaired, runs=1, rows=_impaired_rows()),
    Benchmark("impaired_loss10", run_loss10, runs=1, quick=False, rows=_loss10_rows()),
    Benchmark("formation_loss", run_formation, runs=1, quick=False, rows=_formation_rows()),
]
