"""The mesh keeps working while the lobby is away; the lobby client comes back on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mesh_helpers import full_mesh

import netplay

pytestmark = pytest.mark.timeout(60)


async def exchange(a: Any, b: Any, tag: str) -> None:
    """One state and one event each way, checked on arrival (deadline 10 s)."""
    a.send_state({"tag": tag, "from": "a"})
    b.send_state({"tag": tag, "from": "b"})
    a.send_event(f"{tag} a->b")
    b.send_event(f"{tag} b->a")
    assert (await b.wait_for(netplay.MessageReceived, timeout=10)).body == f"{tag} a->b"
    assert (await a.wait_for(netplay.MessageReceived, timeout=10)).body == f"{tag} b->a"
    async with asyncio.timeout(10):
        while (b.states().get(a.peer_id, {}).get("tag") != tag
               or a.states().get(b.peer_id, {}).get("tag") != tag):
            await asyncio.sleep(0.01)


async def test_lobby_stopped_mid_game_then_restarted(lobby_factory: Any) -> None:
    server = lobby_factory(resume_grace=30.0)
    port = server.port
    async with full_mesh(server, 2, lobby_reconnect_delay=0.05) as (a, b):
        for m in (a, b):
            await m.wait_for(netplay.PeerJoined)  # the first connection
        await exchange(a, b, "before")
        server.stop()
        for m in (a, b):
            ev = await m.wait_for(netplay.LobbyConnectionChanged, timeout=10)
            assert ev == netplay.LobbyConnectionChanged(connected=False, resumed=False)
            assert not m.lobby_connected
        # the game goes on peer to peer; lobby requests fail clearly meanwhile
        await exchange(a, b, "lobby down")
        await exchange(a, b, "still down")
        with pytest.raises(netplay.LobbyDisconnected):
            await a.list_lobbies()
        assert a.peers == [b.peer_id] and b.peers == [a.peer_id]

        lobby_factory(port=port)  # the same address comes back (a fresh lobby: no old state)
        for m in (a, b):
            ev = await m.wait_for(netplay.LobbyConnectionChanged, timeout=15)
            assert ev.connected
            assert m.lobby_connected
        await exchange(a, b, "after restart")
        assert a.peers == [b.peer_id] and b.peers == [a.peer_id]
        # the restarted lobby forgot everyone: fresh lobby ids, no lobby; our ids stay
        assert a.lobby is None and a.lobby_peer_id != a.peer_id
        # rejoin: host again, the other joins by code; the existing link is recognised
        info = await a.host(game="test")
        await b.join(info.code)
        async with asyncio.timeout(10):
            while not (b.lobby is not None and len(b.lobby.members) == 2 and a.lobby is not None
                       and len(a.lobby.members) == 2):
                await b.wait_for(netplay.LobbyUpdated)
        assert b.lobby is not None and b.lobby.host == a.lobby_peer_id and a.is_host
        await exchange(a, b, "rejoined")
        assert a.peers == [b.peer_id] and b.peers == [a.peer_id]
        assert len(a._remotes) == 1 and len(b._remotes) == 1
        # nobody left or joined again while the lobby was away and back
        for m in (a, b):
            assert not m._stream.peek(netplay.PeerLeft) and not m._stream.peek(netplay.PeerJoined)
        # a lobby-level action on the renamed peer still works: kick maps the id
        await a.kick(b.peer_id)
        assert (await a.wait_for(netplay.PeerLeft, timeout=10)) == netplay.PeerLeft(b.peer_id,
                                                                                    "kicked")


async def test_dropped_lobby_socket_resumes_without_disturbing_peers(lobby: Any) -> None:
    async with full_mesh(lobby, 2, lobby_reconnect_delay=0.05) as (a, b):
        for m in (a, b):
            await m.wait_for(netplay.PeerJoined)  # the first connection
        code = a.lobby.code if a.lobby else None
        a_id = a.peer_id
        a._lobby._ws.transport.abort()  # type: ignore[union-attr]  # network blip
        assert (await a.wait_for(netplay.LobbyConnectionChanged)).connected is False
        back = await a.wait_for(netplay.LobbyConnectionChanged, timeout=10)
        assert back == netplay.LobbyConnectionChanged(connected=True, resumed=True)
        assert a.peer_id == a_id and a.lobby is not None and a.lobby.code == code and a.is_host
        await exchange(a, b, "after resume")
        await a.lock()  # host powers still work after the resume
        await b.wait_for(netplay.LobbyUpdated, where=lambda e: e.lobby is not None
                         and e.lobby.locked)
        assert not [e for m in (a, b) for e in m._stream.peek(netplay.PeerLeft)]
