"""``netplay-lobby --redis-url`` instances as separate OS processes: kill -9, restarts,
``--workers``, clients failing over behind one URL, and a real netplay mesh across instances.

Instances run ``python -m signaling`` (what ``netplay-lobby`` runs) on a real redis-server
(tests/conftest.py). "Behind one URL" is a small TCP front in this test (what a load balancer
does): it hands each new connection to the first instance that accepts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from conftest import LobbyServer, free_port, unique_prefix
from mesh_helpers import assert_loopback_only, config

import netplay
from netplay import protocol as p
from netplay.lobby_client import LobbyClient
from netplay.mesh import Mesh
from signaling.settings import Settings

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

OFFER = {"kind": "offer", "sdp": "v=0"}


class LobbyProcess:
    """``python -m signaling --redis-url ...`` on a port of its own (restartable on it)."""

    def __init__(self, redis_url: str, prefix: str, *args: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.args = args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> LobbyProcess:
        env = {**os.environ, "NETPLAY_LOBBY_REDIS_URL": self.redis_url}  # the env variable
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "--port", str(self.port), "--log-level",
             "warning", "--redis-prefix", self.prefix, *self.args], env=env)
        async with httpx.AsyncClient(base_url=self.http_url) as http, asyncio.timeout(30):
            while True:
                assert self.proc.poll() is None, "the lobby process exited"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return self
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no goodbye to Redis or to the clients (the kernel closes the sockets)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck shutdown
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def processes(redis_server: Any) -> Iterator[Any]:
    """``await processes(n, *args)``: n lobby processes sharing one Redis and key prefix."""
    started: list[LobbyProcess] = []

    async def start(n: int, *args: str) -> list[LobbyProcess]:
        prefix = unique_prefix()
        made = [LobbyProcess(redis_server.url, prefix, *args) for _ in range(n)]
        for proc in made:
            await proc.start()
        started.extend(made)
        return made

    yield start
    for proc in started:
        proc.stop()


@contextlib.asynccontextmanager
async def front(*backends: Any) -> AsyncIterator[str]:
    """A TCP front on a free port: each connection goes to the first backend that accepts."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for backend in backends:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend.port)
            except OSError:
                continue
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"ws://127.0.0.1:{port}/ws"
        server.close()


def test_workers_without_redis_is_refused_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPLAY_LOBBY_")}
    done = subprocess.run([sys.executable, "-m", "signaling", "--workers", "2"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "workers=2 needs redis_url" in lines[0] and "Traceback" not in done.stderr


async def test_workers_with_redis_run_n_worker_processes(processes: Any, connect: Any,
                                                         redis_server: Any) -> None:
    (lobby,) = await processes(1, "--workers", "2")
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with asyncio.timeout(30):  # each worker is an instance with its own heartbeat
            while True:
                live = [i for i in client.smembers(f"{lobby.prefix}instances")
                        if client.exists(f"{lobby.prefix}inst:{i}")]
                if len(live) == 2:
                    break
                await asyncio.sleep(0.05)
    finally:
        client.close()
    ann, bob = await connect(lobby, "ann"), await connect(lobby, "bob")
    code = (await ann.request("host", game="workers"))["lobby"]["code"]
    assert (await bob.request("join", code=code))["type"] == "lobby"
    await ann.expect("peer_joined")


async def test_kill_minus_nine_clients_resume_on_another_and_on_the_restarted_instance(
        processes: Any, connect: Any) -> None:
    one, two = await processes(2)
    ann, bob, carol = (await connect(one, "ann"), await connect(one, "bob"),
                       await connect(two, "carol"))
    code = (await ann.request("host", game="kill9"))["lobby"]["code"]
    for joiner in (bob, carol):
        assert (await joiner.request("join", code=code))["type"] == "lobby"
    await ann.expect("peer_joined")
    await ann.expect("peer_joined")
    await bob.expect("peer_joined")

    one.kill()
    await carol.send(type="signal", to=bob.peer_id, payload=OFFER)  # held for bob in Redis
    # ann comes back through the other instance, bob through the restarted one.
    ann2 = await connect(two, "ann", hello=False)
    welcome = await ann2.hello("ann", resume=ann.resume_token)
    assert (welcome["resumed"], welcome["peer_id"]) == (True, ann.peer_id)
    assert welcome["lobby"]["host"] == ann.peer_id  # back within the host grace: still host
    assert [m["id"] for m in welcome["lobby"]["members"]] == [
        ann.peer_id, bob.peer_id, carol.peer_id]
    await one.start()
    bob2 = await connect(one, "bob", hello=False)
    welcome = await bob2.hello("bob", resume=bob.resume_token)
    assert (welcome["resumed"], welcome["peer_id"]) == (True, bob.peer_id)
    assert (await bob2.expect("signal"))["from"] == carol.peer_id
    await carol.nothing(within=1.0)  # nobody left: no peer_left, no host_changed
    assert (await ann2.request("lock"))["type"] == "lobby"
    assert (await bob2.expect("lobby"))["lobby"]["locked"] is True


async def test_clients_of_a_stopped_instance_resume_on_another(processes: Any,
                                                                connect: Any) -> None:
    one, two = await processes(2)
    ann, bob = await connect(one, "ann"), await connect(two, "bob")
    code = (await ann.request("host", game="stop"))["lobby"]["code"]
    assert (await bob.request("join", code=code))["type"] == "lobby"
    await ann.expect("peer_joined")
    one.stop()  # SIGTERM: a deploy; uvicorn closes the WebSockets (1012) and exits
    async with asyncio.timeout(20):
        await ann.ws.wait_closed()
    back = await connect(two, "ann", hello=False)
    welcome = await back.hello("ann", resume=ann.resume_token)
    assert (welcome["resumed"], welcome["peer_id"]) == (True, ann.peer_id)
    assert welcome["lobby"]["host"] == ann.peer_id
    await bob.nothing(within=1.0)
    await back.send(type="signal", to=bob.peer_id, payload=OFFER)
    assert (await bob.expect("signal"))["from"] == ann.peer_id


async def test_peers_of_a_killed_instance_that_never_come_back_are_dropped(
        processes: Any, connect: Any) -> None:
    one, two = await processes(2, "--resume-grace", "3")
    ann, bob = await connect(one, "ann"), await connect(two, "bob")
    code = (await ann.request("host", game="gone"))["lobby"]["code"]
    assert (await bob.request("join", code=code))["type"] == "lobby"
    one.kill()  # ann's instance dies and ann never comes back
    # Instance two sees the heartbeat stop (5 s), then treats ann like a dropped connection:
    # the host role moves after the host grace, the seat goes after the resume grace.
    await bob.expect("host_changed", timeout=20, host=bob.peer_id)
    await bob.expect("peer_left", timeout=10, peer_id=ann.peer_id, reason="disconnected")
    assert (await bob.request("lock"))["lobby"]["members"] == [
        {"id": bob.peer_id, "name": "bob", "seq": 1}]


async def test_a_stalled_instance_taken_for_dead_takes_its_peers_back(
        processes: Any, connect: Any) -> None:
    one, two = await processes(2, "--resume-grace", "10")
    ann, bob = await connect(one, "ann"), await connect(two, "bob")
    code = (await ann.request("host", game="stall"))["lobby"]["code"]
    assert (await bob.request("join", code=code))["type"] == "lobby"
    await ann.expect("peer_joined")
    assert one.proc is not None
    one.proc.send_signal(signal.SIGSTOP)  # a stall longer than the heartbeat's 5 s
    try:  # instance two takes one for dead: ann is away, and no longer host
        await bob.expect("host_changed", timeout=20, host=bob.peer_id)
    finally:
        one.proc.send_signal(signal.SIGCONT)
    # One wakes up, hears it was taken for dead, and takes ann back before its grace ends:
    # ann keeps its seat (no peer_left, even after the 10 s grace) and can signal.
    await ann.expect("host_changed", timeout=10, host=bob.peer_id)
    await bob.nothing(within=11.0)
    await ann.send(type="signal", to=bob.peer_id, payload=OFFER)
    assert (await bob.expect("signal"))["from"] == ann.peer_id


async def test_lobby_client_behind_one_url_resumes_on_another_instance(processes: Any) -> None:
    one, two = await processes(2)
    async with front(one, two) as url:
        welcomes: list[p.Welcome | None] = []
        client = LobbyClient(url, "ann", on_message=lambda message: None,
                             on_connection=lambda up, welcome: welcomes.append(welcome))
        first = await client.connect()
        try:
            code = (await client.request(p.Host(game="front"))).lobby.code
            one.kill()  # the instance the front chose first
            async with asyncio.timeout(20):
                while client.reconnects < 1 or not client.connected:
                    await asyncio.sleep(0.02)
            assert client.welcome is not None and client.welcome.resumed
            assert client.peer_id == first.peer_id
            assert client.welcome.lobby is not None and client.welcome.lobby.code == code
            reply = await client.request(p.Lock())  # still the host
            assert reply.lobby.locked is True
        finally:
            await client.close()


async def test_mesh_of_real_peers_across_two_instances(redis_server: Any) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=unique_prefix())
    one, two = LobbyServer(settings).start(), LobbyServer(settings).start()
    try:
        async with Mesh(config(one, "ann")) as ann, Mesh(config(two, "bob")) as bob, \
                Mesh(config(two, "cy")) as cy:
            info = await ann.host(game="mesh", max_players=4)
            await bob.join(info.code)
            await cy.join(info.code)
            for mesh in (ann, bob, cy):
                await mesh.wait_for_peers(2, timeout=30)
                assert_loopback_only(mesh)
            assert ann.send_event({"t": "hello"})
            for mesh in (bob, cy):
                received = await mesh.wait_for(netplay.MessageReceived, timeout=10)
                assert (received.peer_id, received.body) == (ann.peer_id, {"t": "hello"})
    finally:
        one.stop()
        two.stop()
