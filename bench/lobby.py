"""Lobby server under load, against a Node ``ws`` relay as the reference, in the same run.

Each server runs in its own process on 127.0.0.1, pinned to CPU 0 (the load generator to CPU 1):
the real lobby (``signaling.app.create_app`` on uvicorn with ``/ws`` served by
``signaling.direct``, as ``netplay-lobby`` runs it:
``python -m bench.lobby --serve FD`` on a socket bound by the parent, so no port race) and
``bench/node_relay.js`` (Debian's ``nodejs`` + ``node-ws``; skipped with a note when absent).
The lobby runs with its per-address limits raised, since every bench client comes from
127.0.0.1. The load generator is one child process on uvloop with ``websockets`` clients:

1. connect C clients and say ``hello`` (``clients_held``; server RSS growth per client from
   ``/proc``: ``memory_per_client_kib``);
2. a quarter of them host a lobby, the rest join by code, 4 to a lobby (``joins_per_s``, lobby
   only);
3. members relay ``signal`` messages (an ICE candidate carrying the send time) to another member:
   at an aggregate 1k and 10k msgs/s (p99 relay latency; server CPU time per delivered message
   from ``/proc/PID/stat``), then in steps up to the highest rate still relayed with p99 <= 50 ms
   and at least 99.9% delivered (``sustainable_per_s``), then as fast as the generator can offer
   (``saturation_per_s`` and the delivered share).

Figures are ``lobby.*`` for the lobby and ``lobby.node_*`` for Node; the rows show their ratios.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import Benchmark, Context, Row, Target, percentile, run_child, run_loop

LOBBY_SIZE = 4
SERVER_CPU = 0
"""The CPU each server is pinned to; the load generator takes the others."""
P99_BOUND = 0.050
"""A rate is sustainable when its p99 relay latency is at most this and >= 99.9% arrive."""
NODE_RELAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_relay.js")
NODE_PATH = "/usr/share/nodejs"
"""Where Debian's node-* packages (node-ws) live; Node from other sources does not look there."""


def serve(fd: int) -> None:
    """Run the lobby on the already-bound listening socket ``fd`` (``BENCH_LOBBY_PROFILE=FILE``:
    under cProfile, written to FILE when the server stops)."""
    import uvicorn

    from signaling.app import create_app
    from signaling.direct import uvicorn_ws
    from signaling.settings import Settings

    # Every bench client comes from 127.0.0.1: lift the per-address limits. A bench client
    # stands for many players (200 clients offer up to 40k msgs/s), so lift the per-connection
    # rate limit too (the Node relay has none); everything else is as netplay-lobby runs.
    # NETPLAY_LOBBY_* variables apply as for netplay-lobby (NETPLAY_LOBBY_WS_IMPL=asgi: the
    # ASGI path, for a comparison).
    settings = Settings.from_env(max_connections_per_ip=1_000_000,
                                 max_lobbies_per_ip=1_000_000, hello_timeout=120,
                                 rate=100_000, burst=100_000)
    config = uvicorn.Config(create_app(settings), fd=fd, log_level="warning",
                            ws_ping_interval=None, backlog=4096,
                            ws_max_size=settings.ws_max_size, ws_per_message_deflate=False,
                            ws=uvicorn_ws(settings))
    profile = os.environ.get("BENCH_LOBBY_PROFILE")
    if not profile:
        uvicorn.Server(config).run()
        return
    import cProfile
    import signal

    profiler = cProfile.Profile()

    def stop(signum: int, frame: object) -> None:  # uvicorn re-raises SIGTERM once it stopped
        profiler.disable()
        profiler.dump_stats(profile)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    profiler.enable()
    uvicorn.Server(config).run()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` so far, all its threads, to the nanosecond (the scheduler's
    ``/proc/PID/task/TID/schedstat``; ``/proc/PID/stat`` counts 10 ms ticks, too coarse for a
    short phase of a server as cheap per message as these). A thread that ends between two
    readings takes its time out of the sum: the servers here keep their threads."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


class Client:
    """One WebSocket client with a background reader that routes replies and signals."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.peer_id = ""
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.latencies: list[float] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            message = json.loads(frame)
            if message["type"] == "signal":
                sent = float(message["payload"]["candidate"])
                self.latencies.append(time.perf_counter() - sent)
            elif message["type"] not in ("peer_joined", "peer_left", "host_changed"):
                self.replies.put_nowait(message)

    async def request(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        await self.ws.send(json.dumps(message))
        while True:
            reply = await asyncio.wait_for(self.replies.get(), 30)
            if reply["type"] == expect:
                return reply
            if reply["type"] == "error":
                raise RuntimeError(f"lobby error: {reply}")


def load_child(port: int, server_pid: int, clients: int, rates: list[int], steps: list[int],
               seconds: float, prefix: str) -> dict[str, float]:
    """Drive the server at ``port`` (process ``server_pid``); see the module docstring."""
    from websockets.asyncio.client import connect

    from netplay.protocol import PROTOCOL_VERSION

    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {SERVER_CPU} or {SERVER_CPU})

    async def main() -> dict[str, float]:
        url = f"ws://127.0.0.1:{port}/ws"
        rss0 = _rss_kib(server_pid)
        conns: list[Client] = []

        async def open_one(i: int) -> Client:
            ws = await connect(url, max_queue=None, ping_interval=None, open_timeout=60)
            client = Client(ws)
            welcome = await client.request(
                {"type": "hello", "v": PROTOCOL_VERSION, "name": f"p{i}"}, "welcome")
            client.peer_id = welcome["peer_id"]
            return client

        for start in range(0, clients, 100):  # connect in waves of 100
            conns += await asyncio.gather(*(open_one(i)
                                            for i in range(start, min(clients, start + 100))))
        await asyncio.sleep(1.0)
        held = sum(1 for c in conns if c.ws.state.name == "OPEN")
        memory = (_rss_kib(server_pid) - rss0) / clients

        groups = [conns[i:i + LOBBY_SIZE] for i in range(0, clients - LOBBY_SIZE + 1, LOBBY_SIZE)]
        codes = await asyncio.gather(*(
            g[0].request({"type": "host", "game": "bench", "public": False}, "lobby")
            for g in groups))
        joiners = [(c, code["lobby"]["code"]) for g, code in zip(groups, codes, strict=True)
                   for c in g[1:]]
        t0 = time.perf_counter()
        await asyncio.gather(*(c.request({"type": "join", "code": code}, "lobby")
                               for c, code in joiners))
        joins_per_s = len(joiners) / (time.perf_counter() - t0)
        await asyncio.sleep(0.5)

        held_key = "clients_held" if clients >= 2000 else "clients_held_quick"
        figures = {held_key: float(held), "memory_per_client_kib": memory,
                   "joins_per_s": joins_per_s}
        pairs = [(g[i], g[(i + 1) % len(g)]) for g in groups for i in range(len(g))]

        async def phase(rate: int | None, length: float) -> tuple[float, float, float, float]:
            """(delivered/s, delivered share, p99 s, server CPU s per delivered message)."""
            for c in conns:
                c.latencies.clear()
            cpu0 = _cpu_seconds(server_pid)
            sent = await _relay(pairs, rate, length)
            deadline = time.monotonic() + 3.0  # let the backlog drain (or not)
            while time.monotonic() < deadline:
                if sum(len(c.latencies) for c in conns) >= sent:
                    break
                await asyncio.sleep(0.05)
            cpu = _cpu_seconds(server_pid) - cpu0
            latencies = [x for c in conns for x in c.latencies]
            delivered = len(latencies)
            return (delivered / length, delivered / max(sent, 1),
                    percentile(latencies, 99) if latencies else float("inf"),
                    cpu / max(delivered, 1))

        for rate in rates:
            per_s, share, p99, cpu = await phase(rate, seconds)
            label = f"{rate // 1000}k"
            figures[f"relay_{label}_per_s"] = per_s
            figures[f"relay_{label}_delivered_pct"] = 100.0 * share
            figures[f"relay_{label}_p99_ms"] = p99 * 1000
            figures[f"relay_{label}_cpu_us"] = cpu * 1e6
        sustainable = 0.0
        for rate in steps:
            per_s, share, p99, cpu = await phase(rate, seconds)
            if p99 > P99_BOUND or share < 0.999:
                break
            sustainable = float(rate)
        figures["sustainable_per_s"] = sustainable
        per_s, share, p99, cpu = await phase(None, seconds)
        figures["saturation_per_s"] = per_s
        figures["saturation_delivered_pct"] = 100.0 * share
        figures["saturation_cpu_us"] = cpu * 1e6
        figures["clients_open_after"] = float(sum(1 for c in conns
                                                  if c.ws.state.name == "OPEN"))
        for c in conns:
            await c.ws.close()
            c.task.cancel()
        return {f"lobby.{prefix}{key}": value for key, value in figures.items()}

    result: dict[str, float] = run_loop("uvloop", main)
    return result


async def _relay(pairs: list[tuple[Client, Client]], rate: int | None, seconds: float) -> int:
    """Send ``rate`` signals per second round-robin over ``pairs`` for ``seconds`` (``None``: as
    fast as this process can); return how many were sent."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(rate * elapsed) - sent if rate is not None else len(pairs)
        for k in range(due):
            sender, receiver = pairs[(sent + k) % len(pairs)]
            frame = json.dumps({"type": "signal", "to": receiver.peer_id,
                                "payload": {"kind": "candidate",
                                            "candidate": repr(time.perf_counter())}})
            await sender.ws.send(frame)
        sent += due
        await asyncio.sleep(0.002 if rate is not None else 0)
    return sent


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


@contextmanager
def lobby_process() -> Iterator[tuple[int, int]]:
    """Run the real lobby in its own process on 127.0.0.1; yield ``(port, pid)``."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    server = subprocess.Popen([sys.executable, "-m", "bench.lobby", "--serve", str(sock.fileno())],
                              pass_fds=[sock.fileno()], cwd=root)
    try:
        os.sched_setaffinity(server.pid, {SERVER_CPU})
        _wait_listening(port)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)
        sock.close()


def node_missing() -> str | None:
    """Why the Node reference cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "no `node` (apt-get install nodejs node-ws)"
    if not os.path.exists(os.path.join(NODE_PATH, "ws")):
        return f"no `ws` module in {NODE_PATH} (apt-get install node-ws)"
    return None


@contextmanager
def node_process() -> Iterator[tuple[int, int]]:
    """Run ``bench/node_relay.js`` on 127.0.0.1; yield ``(port, pid)``."""
    env = {**os.environ, "NODE_PATH": NODE_PATH}
    server = subprocess.Popen(["node", NODE_RELAY, "0"], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        os.sched_setaffinity(server.pid, {SERVER_CPU})
        assert server.stdout is not None
        line = server.stdout.readline().split()
        if line[:1] != ["listening"]:
            raise RuntimeError(f"node relay did not start: {line}")
        yield int(line[1]), server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def run_lobby(ctx: Context) -> dict[str, float]:
    quick = ctx.quick
    load = {"clients": 200 if quick else 2000,
            "rates": [1000] if quick else [1000, 10_000],
            "steps": ([2000, 5000, 10_000] if quick else
                      [2000, 5000, 8000, 10_000, 12_000, 15_000, 18_000, 21_000, 25_000]),
            "seconds": 2.0 if quick else 3.0}
    figures: dict[str, float] = {}
    with lobby_process() as (port, pid):
        figures.update(run_child("bench.lobby:load_child", timeout=600, port=port,
                                 server_pid=pid, prefix="", **load))
    missing = node_missing()
    if missing is not None:
        ctx.progress(f"lobby: Node reference skipped: {missing}")
        return figures
    with node_process() as (port, pid):
        figures.update(run_child("bench.lobby:load_child", timeout=600, port=port,
                                 server_pid=pid, prefix="node_", **load))
    return figures


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            # The kernel accepts on the listening socket before uvicorn runs; ask the app.
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError("lobby server did not start") from exc
            time.sleep(0.05)


def _rows() -> tuple[Row, ...]:
    def pair(label: str, key: str, unit: str, target: Target | None = None) -> tuple[Row, Row]:
        return (Row(f"lobby {label}", f"lobby.{key}", unit, baseline=f"lobby.node_{key}",
                    target=target),
                Row(f"Node ws relay {label}", f"lobby.node_{key}", unit))

    return (
        Row("lobby concurrent clients held", "lobby.clients_held", "", target=Target(">=", 2000)),
        Row("lobby clients held (quick: 200 opened)", "lobby.clients_held_quick", ""),
        *pair("memory per client", "memory_per_client_kib", "KiB", Target("<=", 1.5, True)),
        Row("lobby joins per second", "lobby.joins_per_s", "/s"),
        *pair("sustainable relay (p99 <= 50 ms, >= 99.9%)", "sustainable_per_s", "/s",
              Target(">=", 0.75, True)),
        *pair("relay rate at 1k/s offered", "relay_1k_per_s", "/s"),
        *pair("relay p99 at 1k/s", "relay_1k_p99_ms", "ms", Target("<=", 15)),
        *pair("server CPU per message at 1k/s", "relay_1k_cpu_us", "us"),
        *pair("relay rate at 10k/s offered", "relay_10k_per_s", "/s"),
        *pair("relay p99 at 10k/s", "relay_10k_p99_ms", "ms"),
        *pair("server CPU per message at 10k/s", "relay_10k_cpu_us", "us",
              Target("<=", 1.2, True)),
        *pair("saturation: relayed", "saturation_per_s", "/s"),
        *pair("saturation: delivered share", "saturation_delivered_pct", "%"),
        *pair("saturation: server CPU per message", "saturation_cpu_us", "us"),
        *pair("clients still open after saturation", "clients_open_after", ""),
    )


BENCHMARKS = [Benchmark("lobby", run_lobby, runs=1, rows=_rows())]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
