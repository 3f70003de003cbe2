"""The game side of the lobby protocol facing bad input: refusals, garbage frames, auth tokens.

The hostile lobby here is a real ``websockets`` server on 127.0.0.1 that speaks the protocol
just well enough and then misbehaves; the others are the real lobby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

import netplay
from netplay import protocol as p
from netplay.lobby_client import LobbyClient
from netplay.mesh import Mesh
from signaling.auth import mint_token

pytestmark = pytest.mark.timeout(60)

SECRET = "test-secret-for-auth"


def welcome() -> str:
    return p.encode(p.Welcome(peer_id="hostile1", resume_token="t" * 24))


@contextlib.asynccontextmanager
async def hostile_lobby(script: Callable[[ServerConnection], Any]) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the hello
        await script(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


async def test_garbage_from_the_lobby_is_logged_and_skipped(
        caplog: pytest.LogCaptureFixture) -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send(welcome())
        for frame in ("not json", '{"type": "nope"}', '{"type": "pong", "id": "x"}', "[]"):
            await ws.send(frame)
        await ws.send(p.encode(p.Pong(t=1.5)))

    got: list[p.ServerMessage] = []
    async with hostile_lobby(script) as url:
        client = LobbyClient(url, "me", on_message=got.append, on_connection=lambda *a: None)
        with caplog.at_level(logging.WARNING, logger="netplay.lobby_client"):
            await client.connect()
            async with asyncio.timeout(10):
                while not got:
                    await asyncio.sleep(0.01)
            assert client.connected
        await client.close()
    assert got == [p.Pong(t=1.5)]  # the four bad frames were skipped, the good one delivered
    warnings = [r for r in caplog.records if "bad message" in r.getMessage()]
    assert len(warnings) == 4


async def test_garbage_instead_of_welcome_is_lobby_unavailable() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send('{"type": "welcome"}')  # no peer id, no token

    async with hostile_lobby(script) as url:
        with pytest.raises(netplay.LobbyUnavailable, match="refused the handshake"):
            async with Mesh(netplay.MeshConfig(lobby_url=url, name="me")):
                pass


async def test_wrong_protocol_version_is_rejected_with_both_versions() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send(p.encode(p.Error(code=p.ErrorCode.UNSUPPORTED_VERSION,
                                       message="lobby speaks protocol 7, client sent 1")))

    async with hostile_lobby(script) as url:
        with pytest.raises(netplay.LobbyRejected) as rejected:
            async with Mesh(netplay.MeshConfig(lobby_url=url, name="me")):
                pass
    assert rejected.value.code == "unsupported_version" and "7" in str(rejected.value)


async def test_auth_token_through_the_mesh(lobby_factory: Any) -> None:
    server = lobby_factory(auth_secret=SECRET)
    with pytest.raises(netplay.LobbyRejected) as rejected:
        async with Mesh(netplay.MeshConfig(lobby_url=server.url, name="anon")):
            pass
    assert rejected.value.code == "not_authenticated"
    forged = mint_token("another-secret", "mallory")
    with pytest.raises(netplay.LobbyRejected) as rejected:
        async with Mesh(netplay.MeshConfig(lobby_url=server.url, name="m", auth_token=forged)):
            pass
    assert rejected.value.code == "bad_token"
    token = mint_token(SECRET, "player-42", ttl=60)
    async with Mesh(netplay.MeshConfig(lobby_url=server.url, name="ok", auth_token=token)) as mesh:
        info = await mesh.host(game="auth-test")
        assert info.host == mesh.peer_id
