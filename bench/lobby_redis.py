"""Lobby relay over Redis: two ``netplay-lobby --redis-url`` instances against one.

A real ``redis-server`` (temporary directory, free port, no persistence) and real lobby
processes (``python -m signaling``) on 127.0.0.1. The load generator (one child process,
uvloop, ``websockets`` clients as in ``bench.lobby``) spreads its clients round-robin over the
instances, so in a lobby of 4 most signals cross from one instance to the other through Redis.
For each setup it offers signals at a fixed rate and at far more than the setup can relay:

- ``one_memory``: one instance, the default memory backend (the baseline);
- ``one_redis``: one instance with ``--redis-url`` (what Redis costs a single process);
- ``two_redis``: two instances on the same Redis (what a second process adds).

Figures: relayed signals per second at saturation (what arrived, within a second after the
offering stopped, divided by the offering time) and p99 relay latency at the fixed rate. The
machine runs Redis, the instances and the load generator at once: on 2 cores, two instances
compete with Redis and the generator for CPU.
Skipped (an error row) when redis-server is not installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from bench.harness import Benchmark, Context, Row, Target, percentile, run_child, run_loop

LOBBY_SIZE = 4
STEADY_RATE = 2000
"""Offered signals per second for the latency figure."""
SATURATION_RATE = 40_000
"""Offered signals per second for the throughput figure (beyond what any setup relays)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from exc
            time.sleep(0.05)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        port = _free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", directory],
                                stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def lobby_instances(n: int, redis_url: str | None) -> Iterator[list[int]]:
    """``n`` lobby processes (on ``redis_url``, or the memory backend); yields their ports."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            port = _free_port()
            args = [sys.executable, "-m", "signaling", "--port", str(port),
                    "--log-level", "warning", "--rate", "100000", "--burst", "100000"]
            if redis_url:
                args += ["--redis-url", redis_url]
            proc = subprocess.Popen(args, cwd=root)
            stack.callback(lambda p=proc: (p.terminate(), p.wait(timeout=10)))
            _wait(f"http://127.0.0.1:{port}/healthz", "a lobby instance")
            ports.append(port)
        yield ports


def load_child(ports: list[int], clients: int, seconds: float) -> dict[str, float]:
    """Clients round-robin over ``ports``; relay at STEADY_RATE, then at SATURATION_RATE."""
    from websockets.asyncio.client import connect

    from bench.lobby import Client, _relay
    from netplay.protocol import PROTOCOL_VERSION

    async def main() -> dict[str, float]:
        async def open_one(i: int) -> Client:
            ws = await connect(f"ws://127.0.0.1:{ports[i % len(ports)]}/ws", max_queue=None,
                               ping_interval=None, open_timeout=30)
            client = Client(ws)
            welcome = await client.request(
                {"type": "hello", "v": PROTOCOL_VERSION, "name": f"p{i}"}, "welcome")
            client.peer_id = welcome["peer_id"]  # type: ignore[attr-defined]
            return client

        conns = list(await asyncio.gather(*(open_one(i) for i in range(clients))))
        groups = [conns[i:i + LOBBY_SIZE] for i in range(0, clients - LOBBY_SIZE + 1, LOBBY_SIZE)]
        for group in groups:
            code = (await group[0].request({"type": "host", "game": "bench", "public": False},
                                           "lobby"))["lobby"]["code"]
            for member in group[1:]:
                await member.request({"type": "join", "code": code}, "lobby")
        pairs = [(g[i], g[(i + 1) % len(g)]) for g in groups for i in range(len(g))]
        figures: dict[str, float] = {}
        for rate, name in ((STEADY_RATE, "steady"), (SATURATION_RATE, "saturated")):
            for c in conns:
                c.latencies.clear()
            sent = await _relay(pairs, rate, seconds)
            await asyncio.sleep(1.0)
            latencies = [x for c in conns for x in c.latencies]
            figures[f"{name}_per_s"] = len(latencies) / seconds
            figures[f"{name}_delivered_pct"] = 100.0 * len(latencies) / max(sent, 1)
            figures[f"{name}_p99_ms"] = percentile(latencies, 99) * 1000
        for c in conns:
            await c.ws.close()
            c.task.cancel()
        return figures

    result: dict[str, float] = run_loop("uvloop", main)
    return result


def run_lobby_redis(ctx: Context) -> dict[str, float]:
    """The three setups of the module docstring; figures keyed ``lobby.redis_<setup>_...``."""
    clients = 80 if ctx.quick else 200
    seconds = 2.0 if ctx.quick else 4.0
    figures: dict[str, float] = {}
    with redis_server() as url:
        for setup, n, redis_url in (("one_memory", 1, None), ("one_redis", 1, url),
                                    ("two_redis", 2, url)):
            with lobby_instances(n, redis_url) as ports:
                result = run_child("bench.lobby_redis:load_child", timeout=300, ports=ports,
                                   clients=clients, seconds=seconds)
            figures.update({f"lobby.redis_{setup}_{k}": v for k, v in result.items()})
    one = figures["lobby.redis_one_redis_saturated_per_s"]
    figures["lobby.redis_two_vs_one_instance"] = (
        figures["lobby.redis_two_redis_saturated_per_s"] / one if one else 0.0)
    return figures


BENCHMARKS = [
    Benchmark("lobby_redis", run_lobby_redis, runs=1, rows=(
        Row("lobby relay, one instance (memory), saturated",
            "lobby.redis_one_memory_saturated_per_s", "/s"),
        Row("lobby relay, one instance on Redis, saturated",
            "lobby.redis_one_redis_saturated_per_s", "/s"),
        Row("lobby relay, two instances on Redis, saturated",
            "lobby.redis_two_redis_saturated_per_s", "/s"),
        Row("lobby relay, two instances vs one (both on Redis)",
            "lobby.redis_two_vs_one_instance", "x", target=Target(">=", 1.3)),
        Row("lobby relay p99 at 2k/s, one instance (memory)",
            "lobby.redis_one_memory_steady_p99_ms", "ms"),
        Row("lobby relay p99 at 2k/s, two instances on Redis",
            "lobby.redis_two_redis_steady_p99_ms", "ms"),
    )),
]

