"""LobbyClient against the real lobby: handshake, requests, errors, resume, restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netplay import protocol as p
from netplay.errors import LobbyDisconnected, LobbyRejected, LobbyUnavailable
from netplay.lobby_client import LobbyClient

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Collects what a LobbyClient reports, with awaitable arrival."""

    def __init__(self) -> None:
        self.messages: list[p.ServerMessage] = []
        self.connections: list[tuple[bool, p.Welcome | None]] = []
        self.changed = asyncio.Event()

    def on_message(self, message: p.ServerMessage) -> None:
        self.messages.append(message)
        self.changed.set()

    def on_connection(self, connected: bool, welcome: p.Welcome | None) -> None:
        self.connections.append((connected, welcome))
        self.changed.set()

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def client(self, url: str, name: str = "tester", **kwargs: Any) -> LobbyClient:
        return LobbyClient(url, name, on_message=self.on_message,
                           on_connection=self.on_connection, **kwargs)


async def test_handshake_requests_and_errors(lobby: Any) -> None:
    rec = Recorder()
    client = rec.client(lobby.url)
    welcome = await client.connect()
    try:
        assert client.connected and client.peer_id == welcome.peer_id and welcome.resume_token
        state = await client.request(p.Host(game="lc-test", max_players=3))
        assert isinstance(state, p.LobbyState) and state.lobby.host == welcome.peer_id
        listing = await client.request(p.ListLobbies(game="lc-test"))
        assert isinstance(listing, p.LobbyList)
        assert [s.code for s in listing.lobbies] == [state.lobby.code]
        with pytest.raises(LobbyRejected) as rejected:
            await client.request(p.Join(code="ZZZZZZ"))
        assert rejected.value.code == "already_in_lobby"
        with pytest.raises(RuntimeError, match="once"):
            await client.connect()
    finally:
        await client.close()
    await client.close()  # idempotent
    assert not client.connected
    with pytest.raises(LobbyDisconnected, match="not connected"):
        await client.send(p.Ping())


async def test_peer_messages_are_handed_over(lobby: Any) -> None:
    host_rec, guest_rec = Recorder(), Recorder()
    host, guest = host_rec.client(lobby.url, "host"), guest_rec.client(lobby.url, "guest")
    await host.connect()
    await guest.connect()
    try:
        info = (await host.request(p.Host(game="lc-relay"))).lobby
        await guest.request(p.Join(code=info.code))
        await host_rec.until(lambda: any(isinstance(m, p.PeerJoined) for m in host_rec.messages))
        await host.send(p.Signal(to=guest.peer_id, payload=p.OfferPayload(sdp="v=0", attempt=2)))
        await guest_rec.until(lambda: any(isinstance(m, p.RelayedSignal)
                                          for m in guest_rec.messages))
        signal = next(m for m in guest_rec.messages if isinstance(m, p.RelayedSignal))
        assert signal.from_ == host.peer_id and signal.payload.attempt == 2
    finally:
        await guest.close()
        await host.close()


async def test_dropped_socket_resumes_with_the_same_id_and_seat(lobby: Any) -> None:
    rec = Recorder()
    client = rec.client(lobby.url, reconnect_delay=0.05)
    welcome = await client.connect()
    try:
        info = (await client.request(p.Host(game="lc-resume"))).lobby
        assert client._ws is not None
        client._ws.transport.abort()  # the network drops: no close handshake
        await rec.until(lambda: len(rec.connections) >= 2)
        (down, _), (up, again) = rec.connections[:2]
        assert down is False and up is True and again is not None
        assert again.resumed and again.peer_id == welcome.peer_id
        assert again.lobby is not None and again.lobby.code == info.code
        assert isinstance(await client.request(p.Ping(t=1.0)), p.Pong)
    finally:
        await client.close()


async def test_restarted_lobby_gives_a_fresh_session(lobby_factory: Any) -> None:
    server = lobby_factory()
    port = server.port
    rec = Recorder()
    client = rec.client(server.url, reconnect_delay=0.05)
    first = await client.connect()
    try:
        server.stop()
        await rec.until(lambda: rec.connections == [(False, None)])
        with pytest.raises(LobbyDisconnected):
            await client.request(p.Ping())
        lobby_factory(port=port)
        await rec.until(lambda: len(rec.connections) == 2)
        welcome = rec.connections[1][1]
        assert welcome is not None and not welcome.resumed and welcome.peer_id != first.peer_id
        assert client.connected and client.peer_id == welcome.peer_id
    finally:
        await client.close()


async def test_unreachable_lobby(lobby_factory: Any) -> None:
    server = lobby_factory()
    server.stop()
    client = Recorder().client(server.url, connect_timeout=2.0)
    with pytest.raises(LobbyUnavailable, match="cannot reach"):
        await client.connect()
    live = lobby_factory()
    bad_path = Recorder().client(live.url.replace("/ws", "/nope"), connect_timeout=2.0)
    with pytest.raises(LobbyUnavailable, match="cannot reach"):
        await bad_path.connect()


async def test_idle_client_keeps_its_lobby_seat_by_pinging(lobby_factory: Any) -> None:
    # The lobby drops connections that send nothing for idle_timeout; WebSocket-level pings
    # don't count. A game idling in a lobby must stay connected without reconnect churn.
    server = lobby_factory(idle_timeout=0.6)
    rec = Recorder()
    client = rec.client(server.url, ping_interval=0.15)
    await client.connect()
    try:
        state = await client.request(p.Host(game="idle-test"))
        async with asyncio.timeout(10):
            while client.pings_sent < 12:  # about three idle timeouts of silence otherwise
                await asyncio.sleep(0.05)
        assert client.connected and client.reconnects == 0
        assert rec.connections == []  # never lost, never resumed
        assert any(isinstance(m, p.Pong) for m in rec.messages)
        listing = await client.request(p.ListLobbies(game="idle-test"))
        assert [s.code for s in listing.lobbies] == [state.lobby.code]
    finally:
        await client.close()
