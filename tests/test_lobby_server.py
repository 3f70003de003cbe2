"""The lobby server end to end: real uvicorn on an ephemeral port, real WebSocket clients."""

from __future__ import annotations

import asyncio
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


async def test_quick_match_and_list_over_the_wire(lobby: Any, connect: Any) -> None:
    a, b, c = [await connect(lobby, n) for n in "abc"]
    game = "qm-wire"
    first = await a.request("quick_match", game=game, game_version="3", filter={"mode": "duel"},
                            max_players=2)
    assert first["type"] == "lobby" and first["lobby"]["host"] == a.peer_id
    assert first["lobby"]["metadata"] == {"mode": "duel"} and first["lobby"]["max_players"] == 2
    listed = await c.request("list", game=game)
    assert listed["type"] == "lobby_list"
    assert [x["code"] for x in listed["lobbies"]] == [first["lobby"]["code"]]
    assert (await c.request("list", game=game, filter={"mode": "ffa"}))["lobbies"] == []
    second = await b.request("quick_match", game=game, game_version="3", filter={"mode": "duel"})
    assert second["lobby"]["code"] == first["lobby"]["code"]
    await a.expect("peer_joined")
    assert (await c.request("list", game=game))["lobbies"] == []  # full lobbies are not listed


async def test_quick_match_race_20_clients(lobby: Any, connect: Any) -> None:
    clients = [await connect(lobby, f"r{i}") for i in range(20)]
    replies = await asyncio.gather(*(
        c.request("quick_match", game="race-20", max_players=6) for c in clients))
    by_code: dict[str, int] = {}
    for reply in replies:
        assert reply["type"] == "lobby", reply
        by_code[reply["lobby"]["code"]] = by_code.get(reply["lobby"]["code"], 0) + 1
    assert sorted(by_code.values()) == [2, 6, 6, 6]  # filled in order, none over max
    observer = await connect(lobby, "observer")
    listed = (await observer.request("list", game="race-20"))["lobbies"]
    assert [x["players"] for x in listed] == [2]


async def test_two_simultaneous_quick_matches_meet(lobby: Any, connect: Any) -> None:
    a, b = await connect(lobby, "a"), await connect(lobby, "b")
    ra, rb = await asyncio.gather(a.request("quick_match", game="pair"),
                                  b.request("quick_match", game="pair"))
    assert ra["lobby"]["code"] == rb["lobby"]["code"]


async def test_kick_lock_unlock_set_metadata(lobby: Any, members: Any) -> None:
    code, (host, guest, third) = await members(lobby, "h", "g", "t")
    await host.send(type="kick", id=99, peer=guest.peer_id)
    await host.expect("peer_left", peer_id=guest.peer_id, reason="kicked")
    await host.expect("ok", id=99)
    await guest.expect("peer_left", peer_id=guest.peer_id, reason="kicked")
    await third.expect("peer_left", peer_id=guest.peer_id, reason="kicked")
    assert (await guest.request("signal", to=host.peer_id, payload=OFFER))["code"] == \
        "not_in_lobby"

    locked = await host.request("lock")
    assert locked["type"] == "lobby" and locked["lobby"]["locked"] is True
    assert (await third.expect("lobby"))["lobby"]["locked"] is True
    assert (await guest.request("join", code=code))["code"] == "lobby_locked"
    unlocked = await host.request("unlock")
    assert unlocked["lobby"]["locked"] is False
    await third.expect("lobby")
    meta = await host.request("set_metadata", metadata={"map": "dust", "round": 2})
    assert meta["lobby"]["metadata"] == {"map": "dust", "round": 2}
    assert (await third.expect("lobby"))["lobby"]["metadata"] == {"map": "dust", "round": 2}
    assert (await guest.request("join", code=code))["type"] == "lobby"


async def test_relay_only_within_lobby_and_from_cannot_be_spoofed(lobby: Any, members: Any) -> None:
    _, (a, b) = await members(lobby, "a", "b")
    _, (x, y) = await members(lobby, "x", "y")
    reply = await x.request("signal", to=a.peer_id, payload=OFFER)
    assert reply["type"] == "error" and reply["code"] == "unknown_peer"
    # A client-chosen "from" is rejected outright; nothing is relayed.
    reply = await x.request("signal", to=y.peer_id, payload=OFFER, **{"from": a.peer_id})
    assert reply["type"] == "error" and reply["code"] == "bad_message"
    await y.nothing()
    await a.nothing()
    await x.send(type="signal", to=y.peer_id, payload=OFFER)
    assert (await y.expect("signal"))["from"] == x.peer_id
    await b.nothing()


async def test_resume_after_disconnect(lobby_factory: Any, connect: Any, members: Any) -> None:
    server = lobby_factory(resume_grace=5)
    code, (a, b) = await members(server, "a", "b")
    b.ws.transport.abort()
    async with httpx.AsyncClient(base_url=server.http_url) as http, asyncio.timeout(10):
        while (await http.get("/healthz")).json()["suspended"] != 1:  # the lobby saw b drop
            await asyncio.sleep(0.02)
    await a.send(type="signal", to=b.peer_id, payload=OFFER)  # held until b is back
    back = await connect(server, "b", hello=False)
    welcome = await back.hello("b", resume=b.resume_token)
    assert welcome["type"] == "welcome" and welcome["resumed"] is True
    assert welcome["peer_id"] == b.peer_id
    assert welcome["lobby"]["code"] == code
    assert [m["id"] for m in welcome["lobby"]["members"]] == [a.peer_id, b.peer_id]
    assert (await back.expect("signal"))["from"] == a.peer_id
    await a.nothing()  # the others never saw b go
    await back.send(type="signal", to=a.peer_id, payload=OFFER)
    assert (await a.expect("signal"))["from"] == b.peer_id


async def test_dropped_host_hands_on_at_once_and_resumes_as_a_member(
        lobby_factory: Any, connect: Any, members: Any) -> None:
    server = lobby_factory(resume_grace=30)
    code, (a, b, c) = await members(server, "a", "b", "c")
    a.ws.transport.abort()  # as after kill -9: the TCP connection drops without a close frame
    for other in (b, c):  # long before the grace ends, and without peer_left
        await other.expect("host_changed", timeout=3, host=b.peer_id)
    back = await connect(server, "a", hello=False)
    welcome = await back.hello("a", resume=a.resume_token)
    assert welcome["resumed"] is True and welcome["peer_id"] == a.peer_id
    assert welcome["lobby"]["host"] == b.peer_id
    assert [m["id"] for m in welcome["lobby"]["members"]] == [a.peer_id, b.peer_id, c.peer_id]
    assert (await back.request("lock"))["code"] == "not_host"
    await b.nothing()
    await c.nothing()


async def test_resume_replaces_a_still_open_connection(lobby: Any, connect: Any,
                                                       members: Any) -> None:
    _, (a, b) = await members(lobby, "a", "b")
    twin = await connect(lobby, "b", hello=False)
    welcome = await twin.hello("b", resume=b.resume_token)
    assert welcome["resumed"] and welcome["peer_id"] == b.peer_id
    await b.ws.wait_closed()
    assert b.ws.close_code == 1008
    await a.send(type="signal", to=b.peer_id, payload=OFFER)
    await twin.expect("signal")
    await a.nothing()


async def test_unknown_or_expired_resume_token_starts_fresh(lobby_factory: Any,
                                                            connect: Any, members: Any) -> None:
    server = lobby_factory(resume_grace=0.2)
    _, (a, b) = await members(server, "a", "b")
    b.ws.transport.abort()
    await a.expect("peer_left", timeout=3, peer_id=b.peer_id, reason="disconnected")
    late = await connect(server, "b", hello=False)
    welcome = await late.hello("b", resume=b.resume_token)
    assert welcome["resumed"] is False and welcome["peer_id"] != b.peer_id
    assert "lobby" not in welcome
    fresh = await connect(server, "c", hello=False)
    assert (await fresh.hello("c", resume="not-a-token"))["resumed"] is False


async def test_clean_close_leaves_at_once(lobby: Any, members: Any) -> None:
    _, (a, b) = await members(lobby, "a", "b")
    await b.close()
    await a.expect("peer_left", peer_id=b.peer_id, reason="left")


async def test_host_migration_on_leave_and_lobby_closes(lobby_factory: Any, members: Any) -> None:
    server = lobby_factory()
    code, (a, b, c) = await members(server, "a", "b", "c")
    await a.request("leave")
    for other in (b, c):
        await other.expect("peer_left", peer_id=a.peer_id, reason="left")
        await other.expect("host_changed", host=b.peer_id)
    assert (await b.request("lock"))["lobby"]["host"] == b.peer_id
    await c.expect("lobby")
    await b.request("leave")
    await c.expect("peer_left")
    await c.expect("host_changed", host=c.peer_id)
    await c.request("leave")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/healthz")).json()["lobbies"] == 0
    assert (await a.request("join", code=code))["code"] == "lobby_not_found"
