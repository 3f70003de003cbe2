"""Lobby server under load: clients held, joins/s, relayed signals/s, relay p99, memory/client.

The real lobby (``signaling.app.create_app(Settings())`` on uvicorn) runs in its own process on
127.0.0.1 (``python -m bench.lobby --serve FD`` on a socket bound by the parent, so no port race).
The load generator is one child process on uvloop with ``websockets`` clients:

1. connect C clients and say ``hello`` (``lobby.clients_held``; server RSS growth per
   connection from ``/proc``: ``lobby.memory_per_conn_kib``);
2. a quarter of them host a lobby, the rest join by code, 4 to a lobby; ``lobby.joins_per_s`` is
   joiners divided by the wall time of the concurrent joins;
3. members relay ``signal`` messages (an ICE candidate carrying the send time) to another member at
   an aggregate 1k and 10k msgs/s for a few seconds: achieved rate and p99 relay latency
   (``lobby.relay_1k_*``, ``lobby.relay_10k_*``).
"""

from __future__ import annotations

import asyncio
import json
import os
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


def serve(fd: int) -> None:
    """Run the lobby on the already-bound listening socket ``fd``."""
    import uvicorn

    from signaling.app import create_app
    from signaling.settings import Settings

    config = uvicorn.Config(create_app(Settings()), fd=fd, log_level="warning",
                            ws_ping_interval=None, backlog=4096)
    uvicorn.Server(config).run()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Client:
    """One WebSocket client with a background reader that routes replies and signals."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
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


def load_child(port: int, server_pid: int, clients: int, rates: list[int],
               seconds: float) -> dict[str, float]:
    """Drive the lobby at ``port`` (process ``server_pid``); see the module docstring."""
    from websockets.asyncio.client import connect

    from netplay.protocol import PROTOCOL_VERSION

    async def main() -> dict[str, float]:
        url = f"ws://127.0.0.1:{port}/ws"
        rss0 = _rss_kib(server_pid)
        conns: list[Client] = []

        async def open_one(i: int) -> Client:
            ws = await connect(url, max_queue=None, ping_interval=None, open_timeout=30)
            client = Client(ws)
            welcome = await client.request(
                {"type": "hello", "v": PROTOCOL_VERSION, "name": f"p{i}"}, "welcome")
            client.peer_id = welcome["peer_id"]  # type: ignore[attr-defined]
            return client

        for start in range(0, clients, 100):  # connect in waves of 100
            conns += await asyncio.gather(*(open_one(i)
                                            for i in range(start, min(clients, start + 100))))
        await asyncio.sleep(0.5)
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

        held_key = "lobby.clients_held" if clients >= 2000 else "lobby.clients_held_quick"
        figures = {held_key: float(held), "lobby.memory_per_conn_kib": memory,
                   "lobby.joins_per_s": joins_per_s}
        pairs = [(g[i], g[(i + 1) % len(g)]) for g in groups for i in range(len(g))]
        for rate in rates:
            for c in conns:
                c.latencies.clear()
            sent = await _relay(pairs, rate, seconds)
            await asyncio.sleep(1.0)
            latencies = [x for c in conns for x in c.latencies]
            label = f"{rate // 1000}k"
            figures[f"lobby.relay_{label}_per_s"] = len(latencies) / seconds
            figures[f"lobby.relay_{label}_delivered_pct"] = 100.0 * len(latencies) / max(sent, 1)
            figures[f"lobby.relay_{label}_p99_ms"] = percentile(latencies, 99) * 1000
        for c in conns:
            await c.ws.close()
            c.task.cancel()
        return figures

    result: dict[str, float] = run_loop("uvloop", main)
    return result


async def _relay(pairs: list[tuple[Client, Client]], rate: int, seconds: float) -> int:
    """Send ``rate`` signals per second round-robin over ``pairs`` for ``seconds``; return sent."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(rate * elapsed) - sent
        for k in range(due):
            sender, receiver = pairs[(sent + k) % len(pairs)]
            frame = json.dumps({"type": "signal", "to": receiver.peer_id,  # type: ignore[attr-defined]
                                "payload": {"kind": "candidate",
                                            "candidate": repr(time.perf_counter())}})
            await sender.ws.send(frame)
        sent += due
        await asyncio.sleep(0.002)
    return sent


@contextmanager
def lobby_process() -> Iterator[tuple[int, int]]:
    """Run the real lobby in its own process on 127.0.0.1; yield ``(port, pid)``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    server = subprocess.Popen([sys.executable, "-m", "bench.lobby", "--serve", str(sock.fileno())],
                              pass_fds=[sock.fileno()], cwd=root)
    try:
        _wait_listening(port)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)
        sock.close()


def run_lobby(ctx: Context) -> dict[str, float]:
    with lobby_process() as (port, pid):
        return run_child("bench.lobby:load_child", timeout=300, port=port, server_pid=pid,
                         clients=200 if ctx.quick else 2000,
                         rates=[1000] if ctx.quick else [1000, 10_000],
                         seconds=2.0 if ctx.quick else 4.0)


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


BENCHMARKS = [
    Benchmark("lobby", run_lobby, runs=1, rows=(
        Row("lobby concurrent clients held", "lobby.clients_held", "", target=Target(">=", 2000)),
        Row("lobby clients held (quick: 200 opened)", "lobby.clients_held_quick", ""),
        Row("lobby memory per connection", "lobby.memory_per_conn_kib", "KiB"),
        Row("lobby joins per second", "lobby.joins_per_s", "/s"),
        Row("lobby relay rate at 1k/s offered", "lobby.relay_1k_per_s", "/s"),
        Row("lobby relay p99 at 1k/s", "lobby.relay_1k_p99_ms", "ms", target=Target("<=", 15)),
        Row("lobby relay rate at 10k/s offered", "lobby.relay_10k_per_s", "/s"),
        Row("lobby relay p99 at 10k/s", "lobby.relay_10k_p99_ms", "ms"),
    )),
]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
