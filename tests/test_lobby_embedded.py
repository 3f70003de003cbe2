"""signaling.embedded: a lobby inside another program, on a free port, real uvicorn."""

from __future__ import annotations

import json
import urllib.request

from netplay import protocol as p
from signaling.embedded import EmbeddedLobby
from signaling.settings import Settings


async def test_embedded_lobby_serves_websocket_and_http_then_releases_its_port() -> None:
    from websockets.asyncio.client import connect

    with EmbeddedLobby(Settings(max_lobbies=3)) as lobby:
        assert lobby.port != 0 and lobby.url == f"ws://127.0.0.1:{lobby.port}/ws"
        async with connect(lobby.url) as ws:
            await ws.send(p.encode(p.Hello(v=p.PROTOCOL_VERSION, name="lan")))
            welcome = p.parse_server(await ws.recv())
            assert isinstance(welcome, p.Welcome) and welcome.peer_id
        with urllib.request.urlopen(f"{lobby.http_url}/healthz", timeout=5) as response:
            assert response.status == 200
            assert json.load(response)["status"] == "ok"
        port = lobby.port
    # The port is free again: a new lobby can take exactly it.
    with EmbeddedLobby(port=port) as again:
        assert again.port == port
    again.stop()  # idempotent
