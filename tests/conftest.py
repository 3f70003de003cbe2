"""Shared fixtures: a real uvicorn lobby on 127.0.0.1 with an ephemeral port, run in a thread.

Modelled on httpx's ``tests/conftest.py`` (``serve_in_thread``) and matchbox's tests, which bind
port 0. The socket is bound before uvicorn starts, so the port is known without races.

The lobby tests (``tests/test_lobby_*.py``) run twice, once per backend: ``backend_kind`` is
``memory`` or ``redis``, and with ``redis`` every lobby the fixtures start keeps its state in a
real ``redis-server`` (started here on a free port, in a temporary directory, without
persistence), each under its own key prefix so that tests do not see each other's lobbies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import netplay
from netplay.protocol import PROTOCOL_VERSION
from signaling.embedded import EmbeddedLobby
from signaling.settings import Settings


def pytest_report_header() -> str:
    """Which netplay this run tests: the compiled build or pure Python (tests/test_compiled.py,
    and ``.ci/run``, which runs some tests against each)."""
    build = "compiled build (mypyc)" if netplay.compiled else "pure Python"
    return f"netplay: {build}, {Path(netplay.__file__ or '').parent}"


class LobbyServer(EmbeddedLobby):
    """A real lobby (Starlette app on uvicorn) on 127.0.0.1 and an ephemeral port, in a thread."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        super().__init__(settings, port=port)


@contextmanager
def run_lobby(port: int = 0, **overrides: Any) -> Iterator[LobbyServer]:
    """Start a lobby with ``Settings(**overrides)``; stop it on exit."""
    server = LobbyServer(Settings(**overrides), port=port).start()
    try:
        yield server
    finally:
        server.stop()


# --- a real redis-server ---------------------------------------------------------------------

REDIS_SERVER = shutil.which("redis-server")
NO_REDIS = "redis-server is not installed (apt-get install redis-server; .ci/run installs it)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` on 127.0.0.1 and a free port, its files in a temporary
    directory. ``persistent`` turns on the append-only file, so a restart keeps the data."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        assert REDIS_SERVER is not None, NO_REDIS
        self.directory = directory
        self.persistent = persistent
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start (or restart, on the same port) and return once it answers PING."""
        restart = self.port != 0  # a restart keeps its port (its URL is in use)
        for _ in range(5):  # a free port can be taken between the probe and the bind
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes" if self.persistent else "no",
                 "--appendfsync", "always", "--dir", str(self.directory),
                 "--loglevel", "warning", "--protected-mode", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self.ping():
                    return self
                time.sleep(0.02)
            self.stop()
            self.port = self.port if restart else 0
        raise RuntimeError(f"redis-server did not start in {self.directory}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: a clean shutdown that flushes the append-only file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (lobbies use their own key prefixes in it)."""
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS)
    with tempfile.TemporaryDirectory(prefix="netplay-redis-") as directory:
        server = RedisServer(Path(directory)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Any]:
    """``redis_factory(persistent=...)``: a redis-server of this test's own (stopped after)."""
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS)
    started: list[RedisServer] = []

    def factory(*, persistent: bool = False) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, persistent=persistent).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(signal.SIGKILL)


_prefixes = itertools.count()


def unique_prefix() -> str:
    """A Redis key prefix no other lobby of this test session uses."""
    return f"test{next(_prefixes)}:"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each lobby test module once per backend (``test_lobby_*.py`` only)."""
    if ("backend_kind" in metafunc.fixturenames
            and metafunc.module.__name__.split(".")[-1].startswith("test_lobby_")):
        metafunc.parametrize("backend_kind", ["memory", "redis"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend_kind(request: pytest.FixtureRequest) -> str:
    """``memory`` or ``redis``: which backend the lobbies of this test use."""
    return str(getattr(request, "param", "memory"))


@pytest.fixture(scope="session")
def backend_settings(backend_kind: str, request: pytest.FixtureRequest) -> Any:
    """``backend_settings()``: Settings overrides that select the backend of this test (a
    fresh Redis key prefix on each call)."""
    if backend_kind == "memory":
        return dict
    url = request.getfixturevalue("redis_server").url
    return lambda: {"redis_url": url, "redis_prefix": unique_prefix()}


@pytest.fixture(scope="session")
def lobby(backend_settings: Any) -> Iterator[LobbyServer]:
    """One lobby server shared by the whole session (tests use fresh lobbies in it)."""
    with run_lobby(**backend_settings()) as server:
        yield server


@pytest.fixture
def lobby_factory(backend_settings: Any) -> Iterator[Any]:
    """Start lobbies with custom settings (limits, auth); all are stopped after the test."""
    started: list[LobbyServer] = []

    def factory(port: int = 0, **overrides: Any) -> LobbyServer:
        server = LobbyServer(Settings(**{**backend_settings(), **overrides}), port=port).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# --- real WebSocket clients for lobby tests ---------------------------------------------------


class WsClient:
    """A thin test client over a real ``websockets`` connection, speaking raw protocol JSON."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.peer_id: str = ""
        self.resume_token: str = ""
        self.welcome: dict[str, Any] = {}
        self._next_id = 0

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next server message (fails the test after ``timeout``)."""
        async with asyncio.timeout(timeout):
            return json.loads(await self.ws.recv())  # type: ignore[no-any-return]

    async def expect(self, type: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """The next message must have this type (and these field values)."""
        message = await self.recv(timeout)
        assert message["type"] == type, message
        for key, value in fields.items():
            assert message.get(key) == value, (key, message)
        return message

    async def nothing(self, within: float = 0.2) -> None:
        """Assert that no message arrives within ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                message = await self.ws.recv()
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {message}")

    async def request(self, type: str, **fields: Any) -> dict[str, Any]:
        """Send a request with a fresh id; return the next message, which must echo it."""
        self._next_id += 1
        await self.send(type=type, id=self._next_id, **fields)
        reply = await self.recv()
        assert reply.get("id") == self._next_id, reply
        return reply

    async def hello(self, name: str = "player", **fields: Any) -> dict[str, Any]:
        fields.setdefault("v", PROTOCOL_VERSION)
        reply = await self.request("hello", name=name, **fields)
        if reply["type"] == "welcome":
            self.welcome = reply
            self.peer_id = reply["peer_id"]
            self.resume_token = reply["resume_token"]
        return reply

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def connect() -> Any:
    """``await connect(server, name=...)``: a real WebSocket client that has said hello.

    Pass ``hello=False`` for a bare connection. All clients are closed after the test.
    """
    from websockets.asyncio.client import connect as ws_connect

    clients: list[WsClient] = []

    async def factory(server: LobbyServer, name: str = "player", *, hello: bool = True,
                      **hello_fields: Any) -> WsClient:
        client = WsClient(await ws_connect(server.url, open_timeout=5, max_size=None))
        clients.append(client)
        if hello:
            reply = await client.hello(name, **hello_fields)
            assert reply["type"] == "welcome", reply
        return client

    yield factory
    for client in clients:
        await client.ws.close()


@pytest.fixture
def members(connect: Any) -> Any:
    """``code, clients = await members(server, "a", "b", ..., **host_fields)``.

    Connects one client per name; the first hosts a lobby (game ``"test"`` unless given), the
    others join it in order. The ``peer_joined`` events this causes are consumed.
    """

    async def factory(server: LobbyServer, *names: str,
                      **host_fields: Any) -> tuple[str, list[WsClient]]:
        clients = [await connect(server, name) for name in names]
        host_fields.setdefault("game", "test")
        code: str = (await clients[0].request("host", **host_fields))["lobby"]["code"]
        for i, client in enumerate(clients[1:], start=1):
            reply = await client.request("join", code=code, password=host_fields.get("password"))
            assert reply["type"] == "lobby", reply
            for earlier in clients[:i]:
                await earlier.expect("peer_joined")
        return code, clients

    return factory
