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
offering stopped, divided by the offering time) and p99 relay latency at the fixed rate.

Instance ``i`` is pinned to CPU ``i`` (mod the CPU count); Redis and the load generator run
where the scheduler puts them. On a machine with fewer cores than instances + Redis + the
generator, the saturated figures measure the machine, not the instances: two instances on 2
cores share them with Redis and the generator. So each setup also reports the CPU time its
instances and Redis spend per relayed signal at the fixed rate (``/proc/PID/stat``), which does
not depend on how many cores there are (at 2k/s and saturated), and ``two_vs_one_capacity``:
the relay capacity of two instances, each on a core of its own, against one (``2 x one's CPU
per signal / two's``, saturated: the rate at which each instance's core would be busy),
bounded by what Redis's one core relays (``1 / Redis's CPU per signal``).

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
def redis_server() -> Iterator[tuple[str, int]]:
    """A throw-away redis-server; yields its URL and process id."""
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
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def lobby_instances(n: int, redis_url: str | None) -> Iterator[list[tuple[int, int]]]:
    """``n`` lobby processes (on ``redis_url``, or the memory backend), instance ``i`` pinned
    to CPU ``i``; yields their ports and process ids."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cpus = os.cpu_count() or 1
    with ExitStack() as stack:
        instances = []
        for i in range(n):
            port = _free_port()
            # Every bench client comes from 127.0.0.1 and stands for many players: lift the
            # per-address and per-connection limits, as bench.lobby does.
            args = [sys.executable, "-m", "signaling", "--port", str(port),
                    "--log-level", "warning", "--rate", "100000", "--burst", "100000",
                    "--max-connections-per-ip", "1000000", "--max-lobbies-per-ip", "1000000",
                    "--hello-timeout", "120"]
            if redis_url:
                args += ["--redis-url", redis_url]
            proc = subprocess.Popen(args, cwd=root)
            stack.callback(proc.wait, timeout=10)  # callbacks run last-in, first-out
            stack.callback(proc.terminate)
            os.sched_setaffinity(proc.pid, {i % cpus})
            _wait(f"http://127.0.0.1:{port}/healthz", "a lobby instance")
            instances.append((port, proc.pid))
        yield instances


def load_child(ports: list[int], pids: list[int], clients: int,
               seconds: float) -> dict[str, float]:
    """Clients round-robin over ``ports``; relay at STEADY_RATE, then at SATURATION_RATE
    (``pids``: the instances' and Redis's processes, whose CPU time each phase measures)."""
    from websockets.asyncio.client import connect

    from bench.lobby import Client, _cpu_seconds, _relay
    from netplay.protocol import PROTOCOL_VERSION

    async def main() -> dict[str, float]:
        async def open_one(i: int) -> Client:
            ws = await connect(f"ws://127.0.0.1:{ports[i % len(ports)]}/ws", max_queue=None,
                               ping_interval=None, open_timeout=30)
            client = Client(ws)
            welcome = await client.request(
                {"type": "hello", "v": PROTOCOL_VERSION, "name": f"p{i}"}, "welcome")
            client.peer_id = welcome["peer_id"]
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
            cpu0 = [_cpu_seconds(pid) for pid in pids]
            sent = await _relay(pairs, rate, seconds)
            await asyncio.sleep(1.0)
            cpu = [_cpu_seconds(pid) - t for pid, t in zip(pids, cpu0, strict=True)]
            latencies = [x for c in conns for x in c.latencies]
            delivered = max(len(latencies), 1)
            figures[f"{name}_per_s"] = len(latencies) / seconds
            figures[f"{name}_delivered_pct"] = 100.0 * len(latencies) / max(sent, 1)
            figures[f"{name}_p99_ms"] = percentile(latencies, 99) * 1000
            figures[f"{name}_cpu_us"] = sum(cpu[:len(ports)]) / delivered * 1e6
            figures[f"{name}_redis_cpu_us"] = sum(cpu[len(ports):]) / delivered * 1e6
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
    with redis_server() as (url, redis_pid):
        for setup, n, redis_url in (("one_memory", 1, None), ("one_redis", 1, url),
                                    ("two_redis", 2, url)):
            with lobby_instances(n, redis_url) as instances:
                result = run_child("bench.lobby_redis:load_child", timeout=300,
                                   ports=[port for port, _ in instances],
                                   pids=[pid for _, pid in instances] + [redis_pid],
                                   clients=clients, seconds=seconds)
            figures.update({f"lobby.redis_{setup}_{k}": v for k, v in result.items()})
    one = figures["lobby.redis_one_redis_saturated_per_s"]
    figures["lobby.redis_two_vs_one_instance"] = (
        figures["lobby.redis_two_redis_saturated_per_s"] / one if one else 0.0)
    # Capacity with a core per instance: what each instance's CPU per signal under saturation
    # allows, bounded by Redis's own core.
    one_cpu = figures["lobby.redis_one_redis_saturated_cpu_us"]
    two_cpu = figures["lobby.redis_two_redis_saturated_cpu_us"]
    redis_cpu = figures["lobby.redis_two_redis_saturated_redis_cpu_us"]
    if one_cpu and two_cpu:
        two = min(2e6 / two_cpu, 1e6 / redis_cpu if redis_cpu else float("inf"))
        figures["lobby.redis_two_vs_one_capacity"] = two / (1e6 / one_cpu)
    return figures


BENCHMARKS = [
    Benchmark("lobby_redis", run_lobby_redis, runs=1, rows=(
        Row("lobby relay, one instance (memory), saturated",
            "lobby.redis_one_memory_saturated_per_s", "/s"),
        Row("lobby relay, one instance on Redis, saturated",
            "lobby.redis_one_redis_saturated_per_s", "/s"),
        Row("lobby relay, two instances on Redis, saturated",
            "lobby.redis_two_redis_saturated_per_s", "/s"),
        Row("lobby relay, two instances vs one (both on Redis), saturated on this machine",
            "lobby.redis_two_vs_one_instance", "x"),
        Row("lobby instance CPU per signal at 2k/s, one instance (memory)",
            "lobby.redis_one_memory_steady_cpu_us", "us"),
        Row("lobby instance CPU per signal at 2k/s, one instance on Redis",
            "lobby.redis_one_redis_steady_cpu_us", "us"),
        Row("lobby instances' CPU per signal at 2k/s, two instances on Redis",
            "lobby.redis_two_redis_steady_cpu_us", "us"),
        Row("Redis CPU per signal at 2k/s, two instances",
            "lobby.redis_two_redis_steady_redis_cpu_us", "us"),
        Row("lobby instance CPU per signal saturated, one instance on Redis",
            "lobby.redis_one_redis_saturated_cpu_us", "us"),
        Row("lobby instances' CPU per signal saturated, two instances on Redis",
            "lobby.redis_two_redis_saturated_cpu_us", "us"),
        Row("Redis CPU per signal saturated, one instance",
            "lobby.redis_one_redis_saturated_redis_cpu_us", "us"),
        Row("Redis CPU per signal saturated, two instances",
            "lobby.redis_two_redis_saturated_redis_cpu_us", "us"),
        Row("lobby relay capacity, two instances vs one, a core each (from CPU per signal)",
            "lobby.redis_two_vs_one_capacity", "x", target=Target(">=", 1.3)),
        Row("lobby relay p99 at 2k/s, one instance (memory)",
            "lobby.redis_one_memory_steady_p99_ms", "ms"),
        Row("lobby relay p99 at 2k/s, two instances on Redis",
            "lobby.redis_two_redis_steady_p99_ms", "ms"),
    )),
]

