"""Shared fixtures: a real uvicorn lobby on 127.0.0.1 with an ephemeral port, run in a thread.

Modelled on httpx's ``tests/conftest.py`` (``serve_in_thread``) and matchbox's tests, which bind
port 0. The socket is bound before uvicorn starts, so the port is known without races.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from netplay.protocol import PROTOCOL_VERSION
from signaling.embedded import EmbeddedLobby
from signaling.settings import Settings


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


@pytest.fixture(scope="session")
def lobby() -> Iterator[LobbyServer]:
    """One lobby server shared by the whole session (tests use fresh lobbies in it)."""
    with run_lobby() as server:
        yield server


@pytest.fixture
def lobby_factory() -> Iterator[Any]:
    """Start lobbies with custom settings (limits, auth); all are stopped after the test."""
    started: list[LobbyServer] = []

    def factory(port: int = 0, **overrides: Any) -> LobbyServer:
        server = LobbyServer(Settings(**overrides), port=port).start()
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
