"""The game workload: what a real game sends, both ways, netplay against raw aiortc.

Each of two peers sends a ~300-byte state at 30 Hz and 5 small reliable events a second to the
other, for ``seconds``, in a game loop's order: a tick's events, then the state taken at the
end of the tick. Raw aiortc does what a hand-written aiortc game does: one ``send()`` on
the unreliable "state" channel per state and one on the reliable "events" channel per event.
netplay gets ``send_state`` and ``send_event`` and is free to carry a tick's events, acks and
clock echo inside that tick's state datagram.

Both peers live in one child process per (system, event loop), so the process CPU time of the
run divided by (2 peers x seconds) is the CPU one peer costs per second of play. Messages carry
their send time (``perf_counter``) so each delivery's one-way latency is measured too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Benchmark, Context, Row, Target, run_child_per_loop, run_loop, summarize_ms
from bench.pair import age, stamped

STATE_HZ = 30
EVENTS_PER_S = 5
STATE_BYTES = 300
EVENT_BYTES = 40


class _Ends:
    """Send and receive on both ends of a link, whatever the system."""

    def __init__(self, sut: str, link: Any) -> None:
        self.sut, self.link = sut, link

    def send(self, end: str, kind: str, data: bytes) -> None:
        if self.sut == "aiortc":
            self.link.channels[f"{end}.{kind}"].send(data)
        else:
            mesh = self.link.a if end == "a" else self.link.b
            (mesh.send_state if kind == "state" else mesh.send_event)(data)

    def on(self, end: str, kind: str, callback: Callable[[bytes], None]) -> None:
        if self.sut == "aiortc":
            self.link.channels[f"{end}.{kind}"].on("message", callback)
        else:
            mesh = self.link.a if end == "a" else self.link.b
            name = "state" if kind == "state" else "events"
            mesh.channel(name)._deliver = lambda peer, body: callback(body)


async def play(ends: _Ends, seconds: float) -> tuple[float, list[float], list[float], int, int]:
    """Both ends play for ``seconds``; returns (cpu s, state latencies, event latencies,
    states sent, events sent)."""
    states: list[float] = []
    events: list[float] = []
    for end in ("a", "b"):
        ends.on(end, "state", lambda data: states.append(age(data)))
        ends.on(end, "events", lambda data: events.append(age(data)))
    loop = asyncio.get_running_loop()
    tick = 1.0 / STATE_HZ
    every = STATE_HZ // EVENTS_PER_S
    sent_states = sent_events = 0
    cpu0 = time.process_time()
    start = loop.time()
    frame = 0
    while loop.time() - start < seconds:
        for end in ("a", "b"):  # a game loop's order: the tick's events, then its state
            if frame % every == 0:
                ends.send(end, "events", stamped(EVENT_BYTES, b"e"))
                sent_events += 1
            ends.send(end, "state", stamped(STATE_BYTES))
            sent_states += 1
        frame += 1
        await asyncio.sleep(max(0.0, start + frame * tick - loop.time()))
    cpu = time.process_time() - cpu0
    await asyncio.sleep(0.3)  # the last messages arrive
    return cpu, states, events, sent_states, sent_events


def game_child(sut: str, loop: str, seconds: float) -> dict[str, float]:
    """The game workload on ``sut`` and ``loop`` (see the module docstring)."""
    from bench.link import FACTORIES

    async def main() -> dict[str, float]:
        factory = FACTORIES[sut]
        kwargs: dict[str, Any] = {} if sut == "aiortc" else {"send_rate_hz": 60.0}
        async with factory(None, **kwargs) as link:
            ends = _Ends(sut, link)
            await play(ends, 1.0)  # warm-up
            cpu, states, events, n_states, n_events = await play(ends, seconds)
        key = f"{sut}_{loop}"
        figures = {f"game.cpu_{key}_ms_per_peer_s": cpu / (2 * seconds) * 1000,
                   f"game.states_delivered_{key}": len(states) / max(n_states, 1),
                   f"game.events_delivered_{key}": len(events) / max(n_events, 1)}
        figures.update(summarize_ms(f"game.state_{key}", states))
        figures.update(summarize_ms(f"game.event_{key}", events))
        return figures

    result: dict[str, float] = run_loop(loop, main)
    return result


def run_game(ctx: Context) -> dict[str, float]:
    seconds = 4.0 if ctx.quick else 15.0
    figures: dict[str, float] = {}
    for sut in ("aiortc", "netplay_async"):
        figures.update(ctx.attempt(f"game {sut}", lambda sut=sut: run_child_per_loop(
            "bench.game:game_child", timeout=120 + 4 * seconds, sut=sut, seconds=seconds)))
    return figures


def _rows() -> tuple[Row, ...]:
    rows: list[Row] = []
    for loop in ("asyncio", "uvloop"):
        rows += [
            Row(f"raw aiortc game CPU per peer-second, {loop}",
                f"game.cpu_aiortc_{loop}_ms_per_peer_s", "ms"),
            Row(f"raw aiortc game state p50, {loop}", f"game.state_aiortc_{loop}_p50_ms",
                "ms"),
        ]
    n = "netplay_async"
    rows += [
        Row("netplay game CPU per peer-second vs aiortc, same loop",
            f"game.cpu_{n}_uvloop_ms_per_peer_s", "ms", "game.cpu_aiortc_uvloop_ms_per_peer_s",
            Target("<=", 0.8, True), "game.cpu_ratio_vs_aiortc"),
        Row("netplay game CPU per peer-second vs aiortc, default loop",
            f"game.cpu_{n}_uvloop_ms_per_peer_s", "ms", "game.cpu_aiortc_asyncio_ms_per_peer_s",
            None, "game.cpu_ratio_vs_aiortc_default_loop"),
        Row("netplay game state p50 vs aiortc, same loop", f"game.state_{n}_uvloop_p50_ms", "ms",
            "game.state_aiortc_uvloop_p50_ms", Target("<=", 1.15, True),
            "game.state_p50_ratio_vs_aiortc"),
        Row("netplay game state p99 vs aiortc, same loop", f"game.state_{n}_uvloop_p99_ms", "ms",
            "game.state_aiortc_uvloop_p99_ms"),
        Row("netplay game event p50 vs aiortc, same loop", f"game.event_{n}_uvloop_p50_ms", "ms",
            "game.event_aiortc_uvloop_p50_ms"),
        Row("netplay game event p99 vs aiortc, same loop", f"game.event_{n}_uvloop_p99_ms", "ms",
            "game.event_aiortc_uvloop_p99_ms"),
        Row("netplay game states delivered", f"game.states_delivered_{n}_uvloop", ""),
        Row("netplay game events delivered", f"game.events_delivered_{n}_uvloop", "",
            None, Target(">=", 1.0)),
    ]
    return tuple(rows)


BENCHMARKS = [Benchmark("game", run_game, rows=_rows())]
