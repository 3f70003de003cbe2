"""Pair benchmarks over a :class:`bench.link.Link`: latency, setup, throughput and CPU.

Each figure is measured in a child process per (system, event loop), so the loop is clean.
Messages carry their send time (``time.perf_counter``, same process) in the first 8 bytes and
are padded to 200 bytes.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    Benchmark,
    Context,
    Row,
    Target,
    percentile,
    run_child,
    run_child_per_loop,
    run_loop,
    summarize_ms,
)
from bench.link import FACTORIES, AiortcLink, Link

PAYLOAD = 200
_STAMP = struct.Struct("!d")


def stamped(size: int = PAYLOAD, tag: bytes = b"") -> bytes:
    """A message of ``size`` bytes starting with the current ``perf_counter``."""
    head = _STAMP.pack(time.perf_counter()) + tag
    return head + b"\0" * (size - len(head))


def age(data: bytes) -> float:
    """Seconds since ``data`` was stamped."""
    return time.perf_counter() - float(_STAMP.unpack_from(data)[0])


async def one_way_latency(link: Link, count: int, rate_hz: float | None) -> list[float]:
    """One-way latencies of ``count`` state messages, at ``rate_hz`` or flat-out (one in flight)."""
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    waiter: asyncio.Future[None] | None = None

    def received(data: bytes) -> None:
        samples.append(age(data))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    link.on_state(received)
    if rate_hz is None:
        for _ in range(count):
            waiter = loop.create_future()
            link.send_state(stamped())
            try:
                await asyncio.wait_for(waiter, 1.0)
            except TimeoutError:
                pass  # lost: the next message goes anyway
    else:
        start = loop.time()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate_hz - loop.time()))
            link.send_state(stamped())
        await asyncio.sleep(0.2)
    return samples


async def rate_step(link: Link, rate: float, seconds: float) -> tuple[float, float]:
    """Send state messages at ``rate``/s for ``seconds``; return (delivered fraction, p99 s)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    link.on_state(lambda data: latencies.append(age(data)))
    sent = 0
    start = loop.time()
    while (elapsed := loop.time() - start) < seconds:
        due = int(rate * elapsed) - sent
        for _ in range(due):
            link.send_state(stamped())
        sent += due
        await asyncio.sleep(0.002)
    deadline = loop.time() + 1.0
    while len(latencies) < sent and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return len(latencies) / max(sent, 1), percentile(latencies, 99)


def _sut(name: str) -> Callable[..., Any]:
    try:
        return FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown system under test {name!r}; known: {', '.join(FACTORIES)}") \
            from None


def pair_child(sut: str, loop: str, quick: bool) -> dict[str, float]:
    """Latency (flat-out and 30 Hz) and CPU per 10k messages of ``sut`` on ``loop``."""

    async def main() -> dict[str, float]:
        figures: dict[str, float] = {}
        async with _sut(sut)(None) as link:
            await one_way_latency(link, 200, None)  # warm-up
            # Flat-out (one message in flight). Both peers live in this process, so the CPU
            # time of this run divided by the messages is send + receive per message, with no
            # coalescing or queueing to flatter either system.
            count = 1000 if quick else 4000
            cpu0 = time.process_time()
            flat = await one_way_latency(link, count, None)
            cpu = time.process_time() - cpu0
            figures.update(summarize_ms(f"latency.{sut}_{loop}", flat))
            figures[f"cpu.{sut}_{loop}_s_per_10k"] = cpu / max(len(flat), 1) * 10_000
            tick = await one_way_latency(link, 60 if quick else 150, 30.0)
            figures.update(summarize_ms(f"latency.{sut}_{loop}_30hz", tick))
        return figures

    result: dict[str, float] = run_loop(loop, main)
    return result


def sync_child(quick: bool) -> dict[str, float]:
    """netplay's game-loop facade (``SyncMesh``, its own loop thread on uvloop if installed).

    The game thread sends and polls ``channel("state").receive()`` every 0.1 ms (sleeping in
    between, as a game's frame loop would, so the loop thread gets the GIL); latency is send call
    to the message being returned by ``receive()``. Flat-out and at 30 Hz.
    """
    from bench.link import lobby_url
    from netplay import MeshConfig, SyncMesh

    url = lobby_url()
    a = SyncMesh(MeshConfig(lobby_url=url, name="a", ice_host_addresses=("127.0.0.1",),
                            send_rate_hz=100_000.0))
    b = SyncMesh(MeshConfig(lobby_url=url, name="b", ice_host_addresses=("127.0.0.1",)))
    with a, b:
        info = a.host("bench", public=False).result(20)
        b.join(info.code).result(20)
        a.wait_for_peers(1, 20).result(25)
        b.wait_for_peers(1, 20).result(25)
        state = b.channel("state")

        def run(count: int, period: float | None) -> list[float]:
            samples: list[float] = []
            start = time.perf_counter()
            for i in range(count):
                if period is not None:
                    time.sleep(max(0.0, start + i * period - time.perf_counter()))
                a.send_state(stamped())
                deadline = time.perf_counter() + 1.0
                while time.perf_counter() < deadline:
                    got = state.receive()
                    if got:
                        samples += [age(body) for _, body in got]
                        break
                    time.sleep(0.0001)
            return samples

        run(200, None)  # warm-up
        figures = summarize_ms("latency.netplay_sync", run(1000 if quick else 4000, None))
        figures.update(summarize_ms("latency.netplay_sync_30hz",
                                    run(60 if quick else 150, 1 / 30)))
    return figures


def setup_child(loop: str, count: int) -> dict[str, float]:
    """Raw aiortc pair setup: createOffer to both channels open, first and median of the rest."""

    async def main() -> dict[str, float]:
        times = []
        for _ in range(count + 1):
            link = AiortcLink()
            try:
                times.append(await link.connect())
            finally:
                await link.close()
        return {f"setup.aiortc_{loop}_first_ms": times[0] * 1000,
                f"setup.aiortc_{loop}_ms": percentile(times[1:], 50) * 1000}

    result: dict[str, float] = run_loop(loop, main)
    return result


RATES = (1000, 2000, 3000, 4000, 5000, 6000, 8000, 10_000, 12_000)


def throughput_child(sut: str, loop: str, seconds: float) -> dict[str, float]:
    """Highest sustained state rate with p99 <= 50 ms, a fresh pair per step.

    Raw aiortc must also deliver >= 99.9% of what was sent. netplay coalesces on purpose (a
    snapshot superseded before its datagram leaves is dropped, newest wins), so its figure is
    the rate of snapshots *delivered* in the best step that kept p99 <= 50 ms.
    """
    coalesces = sut.startswith("netplay")

    async def main() -> dict[str, float]:
        best = 0.0
        for rate in RATES:
            try:
                async with _sut(sut)(None) as link:
                    delivered, p99 = await rate_step(link, rate, seconds)
            except TimeoutError:
                break
            if p99 > 0.050 or (delivered < 0.999 and not coalesces):
                break
            best = max(best, rate * delivered if coalesces else rate)
        return {f"throughput.{sut}_{loop}_msgs_per_s": best}

    result: dict[str, float] = run_loop(loop, main)
    return result


def run_pair(ctx: Context) -> dict[str, float]:
    figures: dict[str, float] = {}
    for sut in FACTORIES:
        figures.update(ctx.attempt(
            f"pair {sut}", lambda sut=sut: run_child_per_loop(  # type: ignore[misc]
                "bench.pair:pair_child", sut=sut, quick=ctx.quick)))
    return figures


def run_sync(ctx: Context) -> dict[str, float]:
    return run_child("bench.pair:sync_child", quick=ctx.quick)


def run_setup(ctx: Context) -> dict[str, float]:
    return run_child_per_loop("bench.pair:setup_child", count=5 if ctx.quick else 15)


def run_throughput(ctx: Context) -> dict[str, float]:
    figures: dict[str, float] = {}
    for sut in FACTORIES:
        figures.update(ctx.attempt(
            f"throughput {sut}", lambda sut=sut: run_child_per_loop(  # type: ignore[misc]
                "bench.pair:throughput_child", timeout=300, sut=sut,
                seconds=1.0 if ctx.quick else 2.0)))
    return figures


def _netplay_rows() -> tuple[Row, ...]:
    """Rows comparing netplay's async facade (on uvloop when installed) with raw aiortc."""
    n = "netplay_async"
    return (
        Row("netplay latency p50 vs aiortc, same loop", f"latency.{n}_uvloop_p50_ms", "ms",
            "latency.aiortc_uvloop_p50_ms", Target("<=", 1.15, True),
            "latency.ratio_p50_vs_aiortc"),
        Row("netplay latency p50 vs aiortc, default loop", f"latency.{n}_uvloop_p50_ms", "ms",
            "latency.aiortc_asyncio_p50_ms", Target("<=", 1.0, True),
            "latency.ratio_p50_vs_aiortc_default_loop"),
        Row("netplay latency p99 vs aiortc, same loop", f"latency.{n}_uvloop_p99_ms", "ms",
            "latency.aiortc_uvloop_p99_ms", Target("<=", 1.3, True), "latency.ratio_p99_vs_aiortc"),
        Row("netplay CPU/10k vs aiortc, same loop", f"cpu.{n}_uvloop_s_per_10k", "s",
            "cpu.aiortc_uvloop_s_per_10k", Target("<=", 1.2, True), "cpu.ratio_vs_aiortc"),
        Row("netplay CPU/10k vs aiortc, default loop", f"cpu.{n}_uvloop_s_per_10k", "s",
            "cpu.aiortc_asyncio_s_per_10k", Target("<=", 0.8, True),
            "cpu.ratio_vs_aiortc_default_loop"),
        Row("netplay throughput vs aiortc, same loop", f"throughput.{n}_uvloop_msgs_per_s",
            "/s", "throughput.aiortc_uvloop_msgs_per_s"),
    )


BENCHMARKS = [
    Benchmark("pair", run_pair, rows=(
        Row("raw aiortc one-way p50, asyncio", "latency.aiortc_asyncio_p50_ms", "ms",
            "latency.udp_asyncio_p50_ms"),
        Row("raw aiortc one-way p99, asyncio", "latency.aiortc_asyncio_p99_ms", "ms",
            "latency.udp_asyncio_p99_ms"),
        Row("raw aiortc one-way p50, uvloop", "latency.aiortc_uvloop_p50_ms", "ms",
            "latency.udp_uvloop_p50_ms"),
        Row("raw aiortc one-way p99, uvloop", "latency.aiortc_uvloop_p99_ms", "ms",
            "latency.udp_uvloop_p99_ms"),
        Row("raw aiortc one-way p50 at 30 Hz, asyncio", "latency.aiortc_asyncio_30hz_p50_ms", "ms"),
        Row("raw aiortc one-way p50 at 30 Hz, uvloop", "latency.aiortc_uvloop_30hz_p50_ms", "ms"),
        Row("netplay one-way p50 at 30 Hz, uvloop", "latency.netplay_async_uvloop_30hz_p50_ms",
            "ms", "latency.aiortc_uvloop_30hz_p50_ms"),
        Row("netplay one-way p99 at 30 Hz, uvloop", "latency.netplay_async_uvloop_30hz_p99_ms",
            "ms", "latency.aiortc_uvloop_30hz_p99_ms"),
        Row("raw aiortc CPU per 10k msgs, asyncio", "cpu.aiortc_asyncio_s_per_10k", "s"),
        Row("raw aiortc CPU per 10k msgs, uvloop", "cpu.aiortc_uvloop_s_per_10k", "s",
            "cpu.aiortc_asyncio_s_per_10k"),
        *_netplay_rows(),
    )),
    Benchmark("sync_facade", run_sync, rows=(
        Row("netplay game-loop facade one-way p50", "latency.netplay_sync_p50_ms", "ms",
            "latency.aiortc_uvloop_p50_ms"),
        Row("netplay game-loop facade one-way p99", "latency.netplay_sync_p99_ms", "ms",
            "latency.aiortc_uvloop_p99_ms"),
        Row("netplay game-loop facade p50 at 30 Hz", "latency.netplay_sync_30hz_p50_ms", "ms",
            "latency.aiortc_uvloop_30hz_p50_ms"),
    )),
    Benchmark("setup", run_setup, rows=(
        Row("raw aiortc pair setup, asyncio", "setup.aiortc_asyncio_ms", "ms"),
        Row("raw aiortc pair setup (first), asyncio", "setup.aiortc_asyncio_first_ms", "ms"),
        Row("raw aiortc pair setup, uvloop", "setup.aiortc_uvloop_ms", "ms"),
    )),
    Benchmark("throughput", run_throughput, quick=False, runs=1, rows=(
        Row("raw aiortc sustained rate, asyncio", "throughput.aiortc_asyncio_msgs_per_s", "/s"),
        Row("raw aiortc sustained rate, uvloop", "throughput.aiortc_uvloop_msgs_per_s", "/s"),
    )),
]
