"""The lobby server end to end: real uvicorn on an ephemeral port, real WebSocket clients."""

from __future__ import annotations

import json
from typing import Any

import httpx

from netplay.protocol import PROTOCOL_VERSION, parse_server

OFFER = {"kind": "offer", "sdp": "v=0\r\n", "attempt": 1}


async def test_hello_gets_welcome_with_server_assigned_id(lobby: Any, connect: Any) -> None:
    a = await connect(lobby, "ann")
    b = await connect(lobby, "bob")
    assert a.peer_id and b.peer_id and a.peer_id != b.peer_id
    assert a.welcome["v"] == PROTOCOL_VERSION
    assert a.welcome["ice_servers"] == []  # no STUN/TURN unless configured: never a public one
    assert a.welcome["resumed"] is False
    assert len(a.resume_token) >= 20
    parse_server(json.dumps(a.welcome))


async def test_host_join_and_member_events(lobby: Any, connect: Any) -> None:
    host = await connect(lobby, "host")
    guest = await connect(lobby, "guest")
    reply = await host.request("host", game="squares", game_version="1.0", max_players=4,
                               metadata={"map": "a"})
    assert reply["type"] == "lobby"
    info = reply["lobby"]
    code = info["code"]
    assert len(code) == 6
    assert info["host"] == host.peer_id
    assert info["members"] == [{"id": host.peer_id, "name": "host", "seq": 0}]
    assert (info["max_players"], info["public"], info["locked"]) == (4, True, False)
    assert info["metadata"] == {"map": "a"}

    reply = await guest.request("join", code=code.lower())  # codes are case-insensitive
    assert reply["type"] == "lobby"
    assert [m["id"] for m in reply["lobby"]["members"]] == [host.peer_id, guest.peer_id]
    assert [m["seq"] for m in reply["lobby"]["members"]] == [0, 1]
    joined = await host.expect("peer_joined")
    assert joined["peer"] == {"id": guest.peer_id, "name": "guest", "seq": 1}

    assert (await guest.request("leave"))["type"] == "ok"
    await host.expect("peer_left", peer_id=guest.peer_id, reason="left")


async def test_signal_relay_stamps_from(lobby: Any, connect: Any) -> None:
    a = await connect(lobby, "a")
    b = await connect(lobby, "b")
    code = (await a.request("host", game="relay"))["lobby"]["code"]
    await b.request("join", code=code)
    await a.expect("peer_joined")
    await a.send(type="signal", to=b.peer_id, payload=OFFER)
    relayed = await b.expect("signal")
    assert relayed == {"type": "signal", "from": a.peer_id, "payload": OFFER}
    answer = {"kind": "answer", "sdp": "v=0\r\n", "attempt": 1}
    assert (await b.request("signal", to=a.peer_id, payload=answer))["type"] == "ok"
    assert (await a.expect("signal"))["from"] == b.peer_id


async def test_ping_pong(lobby: Any, connect: Any) -> None:
    a = await connect(lobby)
    reply = await a.request("ping", t=12.5)
    assert reply == {"type": "pong", "id": a._next_id, "t": 12.5}
    await a.send(type="ping")
    assert await a.recv() == {"type": "pong"}


async def test_disconnect_announces_peer_left_and_migrates_host(lobby_factory: Any,
                                                                connect: Any) -> None:
    server = lobby_factory(resume_grace=0)
    a = await connect(server, "a")
    b = await connect(server, "b")
    c = await connect(server, "c")
    code = (await a.request("host", game="mig"))["lobby"]["code"]
    await b.request("join", code=code)
    await c.request("join", code=code)
    await a.expect("peer_joined")
    await a.expect("peer_joined")
    await b.expect("peer_joined")
    a.ws.transport.abort()  # the TCP connection dies without a close frame
    for other in (b, c):
        await other.expect("peer_left", peer_id=a.peer_id, reason="disconnected")
        await other.expect("host_changed", host=b.peer_id)


async def test_healthz_and_lobbies(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory()
    a = await connect(server)
    await a.request("host", game="listed", game_version="2")
    b = await connect(server)
    await b.request("host", game="other")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        health = (await http.get("/healthz")).json()
        assert health["status"] == "ok"
        assert health["connections"] == 2 and health["lobbies"] == 2 and health["members"] == 2
        listed = (await http.get("/lobbies", params={"game": "listed"})).json()["lobbies"]
        assert [(x["game"], x["game_version"], x["players"]) for x in listed] == [
            ("listed", "2", 1)]
        assert len((await http.get("/lobbies")).json()["lobbies"]) == 2
