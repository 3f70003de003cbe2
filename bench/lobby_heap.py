"""What one lobby connection holds on the Python heap, per ``--ws-impl`` (tracemalloc).

For each of ``direct`` and ``asgi``: a child process runs an in-process lobby
(``signaling.embedded.EmbeddedLobby``) under ``tracemalloc``, a grandchild opens C WebSocket
connections that each say ``hello``, and the heap growth between two snapshots (after a full
garbage collection) divided by C is the figure. ``python -m bench.lobby_heap`` prints the
largest items by file as well. The RSS figure of ``bench.lobby`` adds the allocator's and the
event loop's native memory to this.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time

from bench.harness import Benchmark, Context, Row, run_child

IMPLS = ("direct", "asgi")

_CLIENTS = '''
import asyncio, json, sys
from websockets.asyncio.client import connect
from netplay.protocol import PROTOCOL_VERSION

async def main(url, count):
    conns = []
    for i in range(count):
        ws = await connect(url, ping_interval=None)
        await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "name": f"p{i}"}))
        await ws.recv()
        conns.append(ws)
    print("ready", flush=True)
    sys.stdin.readline()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
'''


def heap_child(impl: str, connections: int, top: int = 0) -> dict[str, float]:
    """Heap bytes per connection with ``ws_impl=impl`` (``top``: print that many files)."""
    import tracemalloc

    from signaling.embedded import EmbeddedLobby
    from signaling.settings import Settings

    tracemalloc.start(1)
    lobby = EmbeddedLobby(Settings(ws_impl=impl, max_connections_per_ip=1_000_000,
                                   hello_timeout=600, idle_timeout=600)).start()
    clients = None
    try:
        time.sleep(0.3)
        gc.collect()
        before = tracemalloc.take_snapshot()
        clients = subprocess.Popen([sys.executable, "-c", _CLIENTS, lobby.url, str(connections)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert clients.stdout is not None and clients.stdin is not None
        if clients.stdout.readline().strip() != "ready":
            raise RuntimeError("the clients did not connect")
        time.sleep(0.5)
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(before, "filename")
        for stat in stats[:top]:
            name = stat.traceback[0].filename.rsplit("site-packages/", 1)[-1]
            print(f"{impl}: {stat.size_diff / connections:7.0f} B "
                  f"{stat.count_diff / connections:5.1f} blocks  {name}", file=sys.stderr)
        total = sum(stat.size_diff for stat in stats)
        return {f"lobby.heap_{impl}_kib": total / connections / 1024}
    finally:
        if clients is not None:
            assert clients.stdin is not None
            clients.stdin.write("\n")
            clients.stdin.close()
            clients.wait(timeout=30)
        lobby.stop()


def run_heap(ctx: Context, top: int = 0) -> dict[str, float]:
    figures: dict[str, float] = {}
    for impl in IMPLS:
        figures.update(run_child("bench.lobby_heap:heap_child", timeout=300, impl=impl,
                                 connections=100 if ctx.quick else 500, top=top))
    return figures


BENCHMARKS = [Benchmark("lobby_heap", run_heap, runs=1, rows=(
    Row("lobby Python heap per connection, /ws direct", "lobby.heap_direct_kib", "KiB",
        baseline="lobby.heap_asgi_kib"),
    Row("lobby Python heap per connection, /ws through ASGI", "lobby.heap_asgi_kib", "KiB"),
))]


if __name__ == "__main__":
    for impl in IMPLS:
        print(impl, heap_child(impl, 500, top=12))
