"""What a newcomer meets first: same-machine play with no ICE settings, clear errors that say
what to do, and no warning spam when leaving a match (issue "A newcomer's first hour").

Everything runs against a real lobby on 127.0.0.1 with real aiortc peers. The suite runs in a
network namespace with only loopback, so a peer that gathers no loopback candidates finds no
candidate pair at all: exactly the silent failure a newcomer hit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mesh_helpers import assert_loopback_only, eventually

import netplay
import netplay.peer
from netplay import protocol as p
from netplay.config import lobby_is_loopback
from netplay.mesh import Mesh
from netplay.peer import no_pair_reason

pytestmark = pytest.mark.timeout(90)


def plain_config(lobby: Any, name: str, **overrides: Any) -> netplay.MeshConfig:
    """A MeshConfig with no ICE settings at all: what docs/api.md's recipes use."""
    return netplay.MeshConfig(lobby_url=lobby.url, name=name, **overrides)


# --- same-machine play with no settings ---------------------------------------------------------


@pytest.mark.parametrize(("url", "loopback"), [
    ("ws://127.0.0.1:8765/ws", True),
    ("ws://127.1.2.3/ws", True),
    ("ws://localhost:8765/ws", True),
    ("ws://[::1]:8765/ws", True),
    ("wss://lobby.example.org/ws", False),
    ("ws://192.168.1.5:8765/ws", False),
])
def test_lobby_is_loopback(url: str, loopback: bool) -> None:
    assert lobby_is_loopback(url) is loopback


def test_host_candidate_plan() -> None:
    local = netplay.MeshConfig(lobby_url="ws://127.0.0.1:1/ws")
    assert local.host_candidate_plan() == (("127.0.0.1",), True)  # loopback on top of the rest
    remote = netplay.MeshConfig(lobby_url="wss://lobby.example.org/ws")
    assert remote.host_candidate_plan() == (None, False)  # aioice's own choice
    pinned = netplay.MeshConfig(lobby_url="ws://127.0.0.1:1/ws", ice_host_addresses=("lo",))
    assert pinned.host_candidate_plan() == (("lo",), False)  # exactly what was asked


async def test_same_machine_play_needs_no_ice_setting(lobby: Any) -> None:
    """Two meshes with default ICE settings and a lobby on 127.0.0.1 connect (before: no
    candidates in a loopback-only namespace, "no link after 15 s")."""
    async with Mesh(plain_config(lobby, "alice")) as a, Mesh(plain_config(lobby, "bob")) as b:
        info = await a.host(game="newcomer")
        await b.join(info.code)
        await a.wait_for_peers(1, timeout=30)
        await b.wait_for_peers(1, timeout=30)
        assert_loopback_only(a)
        assert a.send_event({"hi": 1})
        await eventually(lambda: b.channel("events").receive(), timeout=30)


# --- no candidate pair: one WARNING that says what to do ----------------------------------------


def test_no_pair_reason_names_the_cause_and_the_setting() -> None:
    config = netplay.MeshConfig(lobby_url="wss://lobby.example.org/ws")
    none_here = no_pair_reason([], ["127.0.0.1"], config)
    assert none_here is not None
    assert "ICE gathered no candidates on this machine" in none_here
    assert 'ice_host_addresses=("127.0.0.1",)' in none_here and "ice_servers" in none_here
    none_there = no_pair_reason(["192.168.1.5"], [], config)
    assert none_there is not None and "the peer offered no ICE candidates" in none_there
    families = no_pair_reason(["::1"], ["127.0.0.1"], config)
    assert families is not None and "share no IP version" in families
    assert no_pair_reason(["127.0.0.1"], ["127.0.0.1"], config) is None
    assert no_pair_reason(None, ["127.0.0.1"], config) is None  # negotiation not that far


async def test_no_candidate_pair_logs_one_warning_with_advice(
        lobby: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netplay.peer, "_no_pair_warned", False)
    caplog.set_level(logging.INFO)
    # bob gathers on no address at all: no pair can form, whatever ICE tries
    quick = {"connect_timeout": 5.0, "reconnect_attempts": 1}
    async with Mesh(plain_config(lobby, "alice", **quick)) as a, \
            Mesh(plain_config(lobby, "bob", ice_host_addresses=(), **quick)) as b:
        info = await a.host(game="no-pair")
        await b.join(info.code)

        def warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if r.name == "netplay.peer" and r.levelno == logging.WARNING]

        for mesh, other in ((a, b), (b, a)):  # nothing to retry: both give up at once
            left = await mesh.wait_for(netplay.PeerLeft, timeout=40)
            assert (left.peer_id, left.reason) == (other.peer_id, "connection_failed")
            assert "candidates" in left.detail and "ice_host_addresses" in left.detail
        found = warnings()
        assert len(found) == 1, found  # one per process, however many links fail
        assert "no ICE candidate pair for peer" in found[0]
        assert "ice_host_addresses" in found[0]


# --- errors that say what to do ---------------------------------------------------------------


async def test_wrong_lobby_path_says_which_path(lobby: Any) -> None:
    url = lobby.url.rsplit("/", 1)[0] + "/lobby"
    with pytest.raises(netplay.LobbyUnavailable) as caught:
        async with Mesh(netplay.MeshConfig(lobby_url=url)):
            pass
    message = str(caught.value)
    assert f"cannot reach the lobby at {url}" in message
    assert "HTTP 403" in message and "/ws" in message


async def test_nothing_listening_says_is_the_lobby_running() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(netplay.LobbyUnavailable, match="is netplay-lobby running"):
        async with Mesh(netplay.MeshConfig(lobby_url=f"ws://127.0.0.1:{port}/ws")):
            pass


def test_http_url_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="must be a ws:// or wss:// URL"):
        netplay.MeshConfig(lobby_url="http://127.0.0.1:8765/ws")


async def test_oversized_messages_raise_message_too_large(lobby: Any) -> None:
    async with Mesh(plain_config(lobby, "big", max_message_size=1000)) as mesh:
        with pytest.raises(netplay.MessageTooLarge, match="max_message_size") as caught:
            mesh.send_event(b"x" * 2000)
        assert caught.value.limit == 1000 and caught.value.size > 2000
        assert isinstance(caught.value, ValueError)  # what earlier code caught still works
        with pytest.raises(netplay.MessageTooLarge, match="reliable channel"):
            mesh.channel("state").send(b"x" * 70_000)
        with pytest.raises(netplay.MessageTooLarge, match="reliable channel"):
            mesh.send_state(b"x" * 70_000)


def test_sync_mesh_sends_return_bool_and_raise_in_the_callers_thread(lobby: Any) -> None:
    with netplay.SyncMesh(plain_config(lobby, "solo", max_message_size=1000)) as net:
        assert net.send_event({"t": "hello"}) is False  # nobody to address
        assert net.send_state({"x": 1}) is False
        assert net.channel("events").send("x") is False
        with pytest.raises(netplay.MessageTooLarge):
            net.send_event(b"x" * 2000)
        with pytest.raises(netplay.MessageTooLarge):
            net.channel("events").send(b"x" * 2000)
        with pytest.raises(netplay.MessageTooLarge):
            net.send_state(b"x" * 70_000)


def test_sync_mesh_send_event_returns_true_when_a_peer_is_addressed(lobby: Any) -> None:
    with netplay.SyncMesh(plain_config(lobby, "a")) as a, \
            netplay.SyncMesh(plain_config(lobby, "b")) as b:
        code = a.host(game="sync-bool").result(timeout=20).code
        b.join(code).result(timeout=20)
        a.wait_for_peers(1, timeout=30).result(timeout=40)
        peer = a.peers[0]
        assert a.send_event({"t": "hello"}) is True
        assert a.send_event({"t": "hello"}, to=peer) is True
        assert a.send_event({"t": "hello"}, to="nobody") is False
        assert a.send_state({"x": 1}) is True


# --- leaving a match says nothing alarming ------------------------------------------------------


async def test_leaving_logs_no_lobby_warning(lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with Mesh(plain_config(lobby, "host")) as a, Mesh(plain_config(lobby, "b")) as b, \
            Mesh(plain_config(lobby, "c")) as c:
        info = await a.host(game="leave-quietly")
        await b.join(info.code)
        await c.join(info.code)
        for mesh in (a, b, c):
            await mesh.wait_for_peers(2, timeout=30)
        await b.leave()
        # A signal that was already on its way when we left is answered "not_in_lobby":
        # expected after leaving, so it must not reach the player's terminal as a WARNING.
        await b._lobby_client().send(p.Signal(to=a.peer_id, payload=p.CandidatePayload(
            candidate="", sdp_mid="0", sdp_mline_index=0)))
        await b._lobby_client().request(p.Ping(t=0.0))  # the error came back before this
        await asyncio.sleep(0)
    lobby_warnings = [r.getMessage() for r in caplog.records
                      if r.name.startswith("netplay") and r.levelno >= logging.WARNING]
    assert lobby_warnings == []


async def test_wait_for_peers_timeout_says_what_happened(lobby: Any) -> None:
    async with Mesh(plain_config(lobby, "lonely")) as mesh:
        await mesh.host(game="nobody-comes")
        with pytest.raises(netplay.PeersNotConnected, match=r"0 of 1 peer\(s\) connected after "
                                                          r"0.5 s; no peer failed") as caught:
            await mesh.wait_for_peers(1, timeout=0.5)
        assert isinstance(caught.value, TimeoutError)
        assert (caught.value.wanted, caught.value.connected, caught.value.failures) == (1, [], {})
