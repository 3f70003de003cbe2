"""Raw asyncio UDP on 127.0.0.1: the floor every other latency is compared with.

- one-way latency of a 200-byte datagram, measured as RTT/2 of a ping-pong (flat-out: the next
  ping leaves when the previous pong arrives);
- receive rate of one asyncio receiver while another process sends as fast as it can.
Each runs in a child process on the default asyncio loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from typing import Any

from bench.harness import Benchmark, Context, Row, run_child_per_loop, run_loop, summarize_ms

PAYLOAD = 200


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _Pinger(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def latency_child(loop: str, count: int) -> dict[str, float]:
    """One-way latency (RTT/2) of ``count`` ping-pongs on ``loop``."""

    async def main() -> dict[str, float]:
        ev = asyncio.get_running_loop()
        echo_t, _ = await ev.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
        ping_t, ping = await ev.create_datagram_endpoint(
            _Pinger, remote_addr=echo_t.get_extra_info("sockname"))
        payload = b"x" * PAYLOAD
        samples = []
        try:
            for i in range(count + 100):
                ping.waiter = ev.create_future()
                start = time.perf_counter()
                ping_t.sendto(payload)
                await asyncio.wait_for(ping.waiter, 2)
                if i >= 100:  # warm-up
                    samples.append((time.perf_counter() - start) / 2)
        finally:
            ping_t.close()
            echo_t.close()
        return summarize_ms(f"latency.udp_{loop}", samples)

    result: dict[str, float] = run_loop(loop, main)
    return result


def _blast(port: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * PAYLOAD
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            try:
                sock.sendto(payload, ("127.0.0.1", port))
            except OSError:
                pass
    sock.close()


class _Counter(asyncio.DatagramProtocol):
    count = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1


def recv_rate_child(loop: str, seconds: float) -> dict[str, float]:
    """Datagrams per second one asyncio receiver handles while another process floods it."""

    async def main() -> dict[str, float]:
        ev = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        transport, counter = await ev.create_datagram_endpoint(_Counter, sock=sock)
        sender = multiprocessing.get_context("spawn").Process(
            target=_blast, args=(sock.getsockname()[1], seconds + 1.0))
        sender.start()
        try:
            await asyncio.sleep(0.5)  # let the sender reach full speed
            first, start = counter.count, time.perf_counter()
            await asyncio.sleep(seconds)
            rate = (counter.count - first) / (time.perf_counter() - start)
        finally:
            sender.join()
            transport.close()
        return {f"udp.recv_rate_{loop}_per_s": rate}

    result: dict[str, float] = run_loop(loop, main)
    return result


def run_latency(ctx: Context) -> dict[str, float]:
    return run_child_per_loop("bench.udp:latency_child", count=1000 if ctx.quick else 5000)


def run_recv_rate(ctx: Context) -> dict[str, float]:
    return run_child_per_loop("bench.udp:recv_rate_child", seconds=0.5 if ctx.quick else 3.0)


BENCHMARKS = [
    Benchmark("udp_latency", run_latency, rows=(
        Row("raw UDP one-way p50, asyncio", "latency.udp_asyncio_p50_ms", "ms"),
        Row("raw UDP one-way p99, asyncio", "latency.udp_asyncio_p99_ms", "ms"),
        Row("raw UDP one-way p50, uvloop", "latency.udp_uvloop_p50_ms", "ms"),
        Row("raw UDP one-way p99, uvloop", "latency.udp_uvloop_p99_ms", "ms"),
    )),
    Benchmark("udp_recv_rate", run_recv_rate, rows=(
        Row("raw UDP receive rate, asyncio", "udp.recv_rate_asyncio_per_s", "/s"),
        Row("raw UDP receive rate, uvloop", "udp.recv_rate_uvloop_per_s", "/s"),
    )),
]
