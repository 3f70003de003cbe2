"""SyncMesh driven from plain frame loops, like a pygame main loop (no asyncio in the test)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from mesh_helpers import config

import netplay

pytestmark = pytest.mark.timeout(60)


def frames(deadline: float = 15.0, fps: float = 120.0) -> Any:
    """A frame clock: yields frame numbers until the deadline, then fails the test."""
    end = time.monotonic() + deadline
    n = 0
    while time.monotonic() < end:
        yield n
        n += 1
        time.sleep(1 / fps)  # the game's own frame pacing (clock.tick), not a wait for netplay
    pytest.fail(f"condition not reached within {deadline} s")


def test_two_sync_meshes_play_from_frame_loops(lobby: Any) -> None:
    with netplay.SyncMesh(config(lobby, "alice")) as a, netplay.SyncMesh(config(lobby, "bob")) as b:
        assert a._loop is not None and type(a._loop).__module__.startswith("uvloop")
        pending = a.host(game="sync-test")
        for _ in frames():
            if pending.done():
                break
        code = pending.result().code
        joined = b.join(code)
        a_events: list[netplay.Event] = []
        b_events: list[netplay.Event] = []
        got_states = False
        events_seen: list[Any] = []
        position = 0
        for _ in frames():
            position += 1
            a_events += a.poll()
            b_events += b.poll()
            a.send_state({"x": position})
            b.send_state({"x": -position})
            if a.peers and b.peers and not events_seen:
                a.send_event({"hello": "bob"})
                b.channel("events").send("hi alice", to=a.peer_id)
                events_seen.append(None)
            events_seen += [body for _, body in b.channel("events").receive()]
            events_seen += [body for _, body in a.channel("events").receive()]
            got_states = a.peer_id in b.states() and b.peer_id in a.states()
            if got_states and len(events_seen) == 3:
                break
        assert joined.result(timeout=1).code == code
        assert sorted(events_seen[1:], key=str) == sorted([{"hello": "bob"}, "hi alice"], key=str)
        assert netplay.PeerJoined(b.peer_id, "bob") in a_events
        assert netplay.PeerJoined(a.peer_id, "alice") in b_events
        assert a.lobby is not None and a.is_host and not b.is_host
        # rendering: one call per frame gives every peer's state (interpolated)
        for _ in frames():
            view = a.interpolated()
            if b.peer_id in view and isinstance(view[b.peer_id], dict):
                break
        assert view[b.peer_id]["x"] < 0
        stats = a.stats(b.peer_id)
        assert stats.bytes_in > 0 and stats.bytes_out > 0
        assert set(a.all_stats()) == {b.peer_id}
        # the state we sent is copied in the caller's thread: mutating it later is harmless
        mine = {"x": 12345}
        a.send_state(mine)
        mine["x"] = 0
        for _ in frames():
            if b.states().get(a.peer_id) == {"x": 12345}:
                break
        b.close()
        for _ in frames():
            if any(isinstance(e, netplay.PeerLeft) for e in a.poll()):
                break
        assert a.peers == []
    assert not any(t.name == "netplay-loop" and t.is_alive() for t in threading.enumerate())


def test_sync_mesh_misuse_and_errors(lobby: Any) -> None:
    net = netplay.SyncMesh(config(lobby, "x"))
    with pytest.raises(RuntimeError, match="not started"):
        net.send_event("x")
    with net:
        with pytest.raises(TypeError, match="msgpack"):
            net.send_state(object())
        with pytest.raises(netplay.UnknownChannel):
            net.channel("nope")
        future = net.join("NOPE42")
        with pytest.raises(netplay.LobbyRejected) as rejected:
            future.result(timeout=10)
        assert rejected.value.code == "lobby_not_found"
        assert net.poll() == []
    net.close()  # idempotent
    with pytest.raises(netplay.ChannelClosed):
        net.send_event("late")
    with pytest.raises(RuntimeError, match="only once"):
        net.start()


def test_sync_mesh_without_uvloop(lobby: Any) -> None:
    with netplay.SyncMesh(config(lobby, "plain"), use_uvloop=False) as net:
        assert net._loop is not None and not type(net._loop).__module__.startswith("uvloop")
        info = net.host(game="plain").result(timeout=10)
        assert net.lobby is not None and net.lobby.code == info.code


def test_unreachable_lobby_raises_from_enter(lobby_factory: Any) -> None:
    server = lobby_factory()
    cfg = config(server, "x", connect_timeout=2.0)
    server.stop()
    with pytest.raises(netplay.LobbyUnavailable):
        with netplay.SyncMesh(cfg):
            pass
