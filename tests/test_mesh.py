"""Full meshes of real aiortc peers in one process, through the real lobby, on loopback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgpack
import pytest

import netplay
from netplay import wire
from netplay.conditioner import ConditionerConfig
from netplay.mesh import Mesh
from mesh_helpers import assert_loopback_only, config, eventually, full_mesh

pytestmark = pytest.mark.timeout(60)


async def test_two_peers_exchange_state_and_events(lobby: Any) -> None:
    async with full_mesh(lobby, 2) as (a, b):
        assert a.peers == [b.peer_id] and b.peers == [a.peer_id]
        assert a.is_host and not b.is_host
        assert a.lobby is not None and {m.id for m in a.lobby.members} == {a.peer_id, b.peer_id}
        joined = await a.wait_for(netplay.PeerJoined, timeout=5)
        assert joined == netplay.PeerJoined(b.peer_id, "p1")

        a.send_state({"x": 1, "blob": b"\x00\xff"})
        b.send_state([1, 2.5, None])
        await eventually(lambda: a.peer_id in b.states() and b.peer_id in a.states())
        assert b.states() == {a.peer_id: {"x": 1, "blob": b"\x00\xff"}}
        assert a.states() == {b.peer_id: [1, 2.5, None]}
        assert b.channel("state").receive() == [(a.peer_id, {"x": 1, "blob": b"\x00\xff"})]

        assert a.send_event({"t": "hit", "n": 1})
        assert a.send_event("second", to=b.peer_id)
        first = await b.wait_for(netplay.MessageReceived, timeout=5)
        second = await b.wait_for(netplay.MessageReceived, timeout=5)
        assert first == netplay.MessageReceived(a.peer_id, "events", {"t": "hit", "n": 1})
        assert second.body == "second"
        assert b.channel("events").receive() == [(a.peer_id, {"t": "hit", "n": 1}),
                                                 (a.peer_id, "second")]
        assert b.channel("events").receive() == []


async def test_sends_to_unknown_peer_return_false_and_bad_values_raise(lobby: Any) -> None:
    async with full_mesh(lobby, 2) as (a, b):
        assert a.send_event("x", to="nobody") is False
        assert a.send_state({"x": 1}, to="nobody") is False
        with pytest.raises(TypeError, match="msgpack"):
            a.send_event(object())
        with pytest.raises(TypeError, match="msgpack"):
            a.send_state({"x": {1, 2}})
        with pytest.raises(TypeError, match="peer id"):
            a.send_event("x", to=3)  # type: ignore[arg-type]
        with pytest.raises(netplay.UnknownChannel, match="no channel named 'nope'"):
            a.channel("nope")


async def test_four_peer_mesh_broadcasts_reach_everyone(lobby: Any) -> None:
    async with full_mesh(lobby, 4) as meshes:
        ids = {m.peer_id for m in meshes}
        for m in meshes:
            assert set(m.peers) == ids - {m.peer_id}
            m.send_event(("hello from", m.peer_id))
        for m in meshes:
            got = set()
            for _ in range(3):
                got.add((await m.wait_for(netplay.MessageReceived, timeout=5)).body[1])
            assert got == ids - {m.peer_id}


async def test_late_joiner_connects_to_everyone(lobby: Any) -> None:
    async with full_mesh(lobby, 2) as (a, b), Mesh(config(lobby, "late")) as c:
        assert a.lobby is not None
        await c.join(a.lobby.code)
        assert sorted(await c.wait_for_peers(2, timeout=10)) == sorted([a.peer_id, b.peer_id])
        for m in (a, b):
            ev = await m.wait_for(netplay.PeerJoined, where=lambda e: e.peer_id == c.peer_id)
            assert ev.name == "late"
            await m.wait_for_peers(2)
        assert_loopback_only(c)


async def test_leave_removes_the_peer_everywhere(lobby: Any) -> None:
    async with full_mesh(lobby, 3) as (a, b, c):
        await c.leave()
        assert c.lobby is None and c.peers == []
        for m in (a, b):
            ev = await m.wait_for(netplay.PeerLeft, timeout=5)
            assert ev == netplay.PeerLeft(c.peer_id, "left")
            await eventually(lambda m=m: c.peer_id not in m.peers
                             and m.lobby is not None and len(m.lobby.members) == 2)
        assert a.peers == [b.peer_id]
        # the leaver saw everyone go, and can join again
        assert a.lobby is not None
        await c.join(a.lobby.code)
        await c.wait_for_peers(2)


async def test_host_migration_seen_by_the_library(lobby: Any) -> None:
    async with full_mesh(lobby, 3) as (a, b, c):
        assert a.is_host
        await a.close()
        for m in (b, c):
            changed = await m.wait_for(netplay.HostChanged, timeout=5)
            assert changed.host == b.peer_id and changed.is_me == (m is b)
            await m.wait_for(netplay.PeerLeft, where=lambda e: e.peer_id == a.peer_id)
        assert b.is_host and not c.is_host
        assert b.peers == [c.peer_id] and c.peers == [b.peer_id]
        await b.lock()
        updated = await c.wait_for(netplay.LobbyUpdated, where=lambda e: e.lobby is not None
                                   and e.lobby.locked)
        assert updated.lobby is not None and updated.lobby.host == b.peer_id


async def test_host_actions_kick_lock_metadata(lobby: Any) -> None:
    async with full_mesh(lobby, 3) as (a, b, c):
        with pytest.raises(netplay.LobbyRejected) as rejected:
            await b.lock()
        assert rejected.value.code == "not_host"
        await a.set_metadata({"map": "desert"})
        await b.wait_for(netplay.LobbyUpdated, where=lambda e: e.lobby is not None
                         and e.lobby.metadata == {"map": "desert"})
        await a.kick(c.peer_id)
        for m in (a, b):
            ev = await m.wait_for(netplay.PeerLeft, where=lambda e: e.peer_id == c.peer_id)
            assert ev.reason == "kicked"
        await c.wait_for(netplay.LobbyUpdated, where=lambda e: e.lobby is None)
        await eventually(lambda: c.peers == [] and c.lobby is None)
        await a.lock()
        assert a.lobby is not None
        with pytest.raises(netplay.LobbyRejected) as locked:
            await c.join(a.lobby.code)
        assert locked.value.code == "lobby_locked"


async def test_quick_match_and_listing(lobby: Any) -> None:
    async with Mesh(config(lobby, "q1")) as a, Mesh(config(lobby, "q2")) as b:
        first = await a.quick_match(game="qm-game", filter={"mode": "duel"})
        listed = await b.list_lobbies(game="qm-game")
        assert [s.code for s in listed] == [first.code]
        second = await b.quick_match(game="qm-game", filter={"mode": "duel"})
        assert second.code == first.code
        await a.wait_for_peers(1)
        with pytest.raises(RuntimeError, match="already in lobby"):
            await b.join(first.code)
        with pytest.raises(netplay.LobbyRejected) as missing:
            async with Mesh(config(lobby, "q3")) as c:
                await c.join("NOPE99")
        assert missing.value.code == "lobby_not_found"


async def test_four_mib_event_arrives_intact(lobby: Any) -> None:
    blob = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    nested = {"chunks": [blob[:1000], blob[1000:200_000]], "n": list(range(10_000))}
    async with full_mesh(lobby, 2) as (a, b):
        a.send_event(blob)
        a.send_event(nested)
        a.send_event("after")
        got = [(await b.wait_for(netplay.MessageReceived, timeout=30)).body for _ in range(3)]
        assert got[0] == blob and got[1] == nested and got[2] == "after"
        assert a.stats(b.peer_id).bad_packets == 0 == b.stats(a.peer_id).bad_packets


async def test_garbled_packets_are_dropped_counted_and_logged_once(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    channels = (netplay.ChannelConfig.unreliable("state"), netplay.ChannelConfig.reliable("events"),
                netplay.ChannelConfig.unreliable("extra"))
    async with full_mesh(lobby, 2, channels=channels) as (a, b):
        # b's raw aiortc channel to a: every datagram travels on it.
        raw = b._remotes[a.peer_id].link.channel  # type: ignore[union-attr]
        epoch = b._remotes[a.peer_id].outbound.epoch  # forged records in b's own stream

        def dgram(*, snapshot: Any = None, body: bytes = b"", acks: Any = None,
                  records: tuple[bytes, ...] = (), version: int = wire.WIRE_VERSION) -> bytes:
            head = wire.pack_head(1, 1.0, None, None, snapshot, body)
            return bytes((version,)) + head[1:] + wire.pack_tail(epoch, acks, records)

        body = wire.pack_body
        garbage = [
            b"\x02\xc1not msgpack",                           # invalid msgpack byte
            b"\x02" + b"\x93\x01\x02\x03",                    # wrong layout (3 fields)
            dgram(version=1),                                  # another wire version
            "text",                                            # text instead of binary
            b"\x02" + b"\xdd\xff\xff\xff\xff",                # claims a 4-billion-element array
            # NaN send time
            b"\x02\x98\x01\xcb\x7f\xf8" + b"\x00" * 6 + b"\xc0\xc0\xc0\x01\xc0\x90",
            dgram(snapshot=(5, 1, 999), body=body({"x": 1})),  # delta against a baseline never sent
            dgram(records=(wire.pack_record(1000, 9, 0, body("x")),)),            # unknown lane
            dgram(records=(wire.pack_unreliable_record(1, body("x")),)),       # unreliable on events
            dgram(records=(wire.pack_record(1001, 2, 0, body("x")),)),            # reliable on "extra"
            dgram(records=(wire.pack_fragment_record(1002, 1, 50, b"\xc1", 0, 2),
                           wire.pack_fragment_record(1003, 1, 50, b"\xc1", 1, 2))),  # pieces not msgpack
            dgram(records=(wire.pack_fragment_record(1004, 1, 51, b"ab", 0, 3),
                           wire.pack_fragment_record(1005, 1, 51, b"ab", 1, 2))),  # counts disagree
            dgram(records=(wire.pack_record(1006, 0, 0, body(["launch", "missiles"])),)),  # control
            dgram(acks=wire.Acks(5, 0, b"\x00" * 300)),       # ack bits over the limit
        ]
        with caplog.at_level(logging.WARNING, logger="netplay"):
            for data in garbage:
                raw.send(data)
            b.send_event("still works")
            ev = await a.wait_for(netplay.MessageReceived, timeout=5)
            assert ev.body == "still works"
            await eventually(lambda: a.stats(b.peer_id).bad_packets == len(garbage))
        warnings = [r for r in caplog.records if "bad packet" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        b.send_state({"ok": True})
        await eventually(lambda: a.states().get(b.peer_id) == {"ok": True})
        assert a.peers == [b.peer_id]


async def test_lost_link_times_out_and_is_reestablished(lobby: Any) -> None:
    async with full_mesh(lobby, 2, connect_timeout=3.0, reconnect_attempts=20) as (a, b):
        for m in (a, b):
            await m.wait_for(netplay.PeerJoined)  # the first connection
        b.set_conditioner(ConditionerConfig(loss=1.0))   # b's link goes silent both ways
        for m, other in ((a, b), (b, a)):
            ev = await m.wait_for(netplay.PeerLeft, timeout=5)
            assert ev == netplay.PeerLeft(other.peer_id, "timed_out")
        assert a.peers == [] and b.peers == []
        b.set_conditioner(None)
        for m, other in ((a, b), (b, a)):
            ev = await m.wait_for(netplay.PeerJoined, timeout=20)
            assert ev.peer_id == other.peer_id
        a.send_event("back")
        assert (await b.wait_for(netplay.MessageReceived, timeout=5)).body == "back"
        assert a._remotes[b.peer_id].link.attempt > 0  # type: ignore[union-attr]
        assert_loopback_only(a)


async def test_mesh_misuse_raises_clear_errors(lobby: Any) -> None:
    mesh = Mesh(config(lobby, "x"))
    with pytest.raises(RuntimeError, match="not open"):
        mesh.send_event("x")
    async with mesh:
        pass
    with pytest.raises(RuntimeError, match="opened only once"):
        await mesh.open()
    with pytest.raises(netplay.ChannelClosed):
        await mesh.host(game="g")
    with pytest.raises(TypeError, match="MeshConfig"):
        Mesh({"lobby_url": lobby.url})  # type: ignore[arg-type]


async def test_unreachable_lobby_raises_lobby_unavailable(lobby_factory: Any) -> None:
    server = lobby_factory()
    url_config = config(server, "x", connect_timeout=2.0)
    server.stop()
    with pytest.raises(netplay.LobbyUnavailable, match="cannot reach the lobby"):
        async with Mesh(url_config):
            pass


async def test_state_sends_coalesce_newest_wins_and_big_states_warn_once(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with full_mesh(lobby, 2, send_rate_hz=20.0) as (a, b):
        for i in range(200):  # a game loop far faster than the send rate
            a.send_state({"i": i})
        await eventually(lambda: b.states().get(a.peer_id) == {"i": 199})
        received = [body["i"] for _, body in b.channel("state").receive()]
        assert received[-1] == 199 and len(received) <= 3  # only the newest pending goes out
        assert received == sorted(received)
        with caplog.at_level(logging.WARNING, logger="netplay"):
            for i in range(3):
                a.send_state({"blob": bytes([i]) * 2000, "i": i})
                await eventually(lambda i=i: b.states().get(a.peer_id, {}).get("i") == i)
        big = [r for r in caplog.records if "state datagram" in r.getMessage()]
        assert len(big) == 1 and "budget 1100" in big[0].getMessage()


async def test_connection_that_never_opens_is_reported_once_and_released(lobby: Any) -> None:
    black_hole = ConditionerConfig(loss=1.0)  # DTLS/SCTP never get through; ICE still does
    async with Mesh(config(lobby, "a", connect_timeout=1.0, reconnect_attempts=1)) as a, \
            Mesh(config(lobby, "b", connect_timeout=1.0, reconnect_attempts=1,
                        conditioner=black_hole)) as b:
        info = await a.host(game="doomed")
        await b.join(info.code)
        for m, other in ((a, b), (b, a)):
            ev = await m.wait_for(netplay.PeerLeft, timeout=15)
            assert ev == netplay.PeerLeft(other.peer_id, "connection_failed")
            r = m._remotes[other.peer_id]
            await eventually(lambda r=r: r.done and r.link is None)
        for m in (a, b):
            assert m.peers == []
            assert not m._stream.peek(netplay.PeerLeft) and not m._stream.peek(netplay.PeerJoined)


async def test_game_supplied_interpolation(lobby: Any) -> None:
    calls: list[float] = []

    def snap(a: Any, b: Any, t: float) -> Any:  # e.g. no blending for a tile-based game
        calls.append(t)
        return b if t >= 0.5 else a

    async with full_mesh(lobby, 2, interpolate=snap, delta_compression=False) as (a, b):
        for i in range(10):
            a.send_state({"x": i})
            await eventually(lambda i=i: b.states().get(a.peer_id) == {"x": i})
        async with asyncio.timeout(5):
            while not calls:
                assert b.interpolated()[a.peer_id]["x"] in range(10)
                await asyncio.sleep(0.01)
        assert a.stats(b.peer_id).delta_bytes_saved == 0


async def test_conditioner_from_the_environment(lobby: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETPLAY_CONDITIONER", "latency=20,seed=3")
    async with full_mesh(lobby, 2) as (a, b):
        for m, other in ((a, b), (b, a)):
            conditioner = m._remotes[other.peer_id].link.conditioner  # type: ignore[union-attr]
            assert conditioner is not None
            assert conditioner.outbound == conditioner.inbound == ConditionerConfig(
                latency_ms=20, seed=3)
        a.send_event("slow but fine")
        assert (await b.wait_for(netplay.MessageReceived)).body == "slow but fine"
        rtt = await eventually(lambda: a.stats(b.peer_id).rtt_ms)
        assert rtt >= 75  # 20 ms added by each side, each way
        a.set_conditioner(None, peer=b.peer_id)
        link = a._remotes[b.peer_id].link
        assert link is not None and link.conditioner is not None
        assert link.conditioner.outbound is None
    monkeypatch.setenv("NETPLAY_CONDITIONER", "latency=oops")
    with pytest.raises(ValueError, match="NETPLAY_CONDITIONER"):
        Mesh(config(lobby, "x"))
