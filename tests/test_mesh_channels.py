"""Extra named channels end to end: configured beyond the defaults, used from both facades."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mesh_helpers import config, eventually, full_mesh

import netplay
from netplay.mesh import Mesh

pytestmark = pytest.mark.timeout(60)

CHANNELS = (*netplay.DEFAULT_CHANNELS, netplay.ChannelConfig.reliable("chat"),
            netplay.ChannelConfig.unreliable("pos"))


def assert_negotiated_by_index(mesh: Mesh) -> None:
    """Every link has one aiortc channel (negotiated id 0, unordered, never retransmitted by
    SCTP), and its lanes follow the configured channels by index."""
    for remote in mesh._remotes.values():
        link = remote.link
        assert link is not None
        dc = link.channel
        assert (dc.label, dc.id, dc.negotiated, dc.readyState) == ("netplay", 0, True, "open")
        assert (dc.ordered, dc.maxRetransmits, dc.maxPacketLifeTime) == (False, 0, None)
        sctp = link.pc.sctp
        assert sctp is not None
        assert {i: c.label for i, c in sctp._data_channels.items()} == {0: "netplay"}
        lanes = remote.outbound._lanes  # lane i is channel i (0: netplay's control lane)
        assert sorted(lanes) == list(range(len(CHANNELS)))
        for index, wanted in enumerate(CHANNELS[1:], start=1):
            spec = lanes[index].spec
            assert (spec.reliable, spec.ordered) == (wanted.is_reliable, wanted.ordered)


async def unreliable_until_received(send: Any, receive: Any, body: Any,
                                    timeout: float = 10.0) -> list[Any]:
    """Send ``body`` on an unreliable channel every 20 ms until something arrives."""
    got: list[Any] = []
    async with asyncio.timeout(timeout):
        while not got:
            send(body)
            await asyncio.sleep(0.02)
            got = receive()
    return got


async def test_extra_channels_between_two_async_meshes(lobby: Any) -> None:
    async with full_mesh(lobby, 2, channels=CHANNELS) as (a, b):
        for mesh in (a, b):
            assert_negotiated_by_index(mesh)
            assert [mesh.channel(c.name).index for c in CHANNELS] == [0, 1, 2, 3]
        assert a.channel("chat").send({"say": "hello"})
        ev = await b.wait_for(netplay.MessageReceived, timeout=5)
        assert ev == netplay.MessageReceived(a.peer_id, "chat", {"say": "hello"})
        assert b.channel("chat").receive() == [(a.peer_id, {"say": "hello"})]
        assert b.channel("events").receive() == []

        got = await unreliable_until_received(a.channel("pos").send, b.channel("pos").receive,
                                              {"x": 1.5, "y": -2})
        assert got[0] == (a.peer_id, {"x": 1.5, "y": -2})
        ev = await b.wait_for(netplay.MessageReceived, timeout=5)
        assert (ev.peer_id, ev.channel) == (a.peer_id, "pos")
        assert b.channel("chat").receive() == []
        # and the other way, to one peer
        assert b.channel("chat").send("back", to=a.peer_id)
        ev = await a.wait_for(netplay.MessageReceived, timeout=5)
        assert (ev.channel, ev.body) == ("chat", "back")
        assert a.stats(b.peer_id).bad_packets == 0 == b.stats(a.peer_id).bad_packets


async def test_extra_channels_between_the_async_and_the_sync_facade(lobby: Any) -> None:
    async with Mesh(config(lobby, "async", channels=CHANNELS)) as a:
        with netplay.SyncMesh(config(lobby, "sync", channels=CHANNELS)) as b:
            info = await a.host(game="channels")
            await asyncio.wrap_future(b.join(info.code))
            await a.wait_for_peers(1)
            await eventually(lambda: b.peers == [a.peer_id])
            assert_negotiated_by_index(a)

            # async -> sync: reliable "chat", unreliable "pos"
            a.channel("chat").send(["hi", 1])
            chat = await eventually(lambda: b.channel("chat").receive())
            assert chat == [(a.peer_id, ["hi", 1])]
            pos = await unreliable_until_received(a.channel("pos").send,
                                                  b.channel("pos").receive, {"x": 3})
            assert pos[0] == (a.peer_id, {"x": 3})
            seen: list[netplay.Event] = []
            await eventually(lambda: seen.extend(b.poll()) or
                             {"chat", "pos"} <= {e.channel for e in seen
                                                 if isinstance(e, netplay.MessageReceived)})

            # sync -> async: SyncChannel.send on the reliable and the unreliable extra channel
            b.channel("chat").send({"from": "sync"})
            ev = await a.wait_for(netplay.MessageReceived, timeout=5)
            assert ev == netplay.MessageReceived(b.peer_id, "chat", {"from": "sync"})
            assert a.channel("chat").receive() == [(b.peer_id, {"from": "sync"})]
            pos = await unreliable_until_received(b.channel("pos").send,
                                                  a.channel("pos").receive, [7, 8])
            assert pos[0] == (b.peer_id, [7, 8])
            ev = await a.wait_for(netplay.MessageReceived, timeout=5)
            assert (ev.channel, ev.body) == ("pos", [7, 8])
            assert a.stats(b.peer_id).bad_packets == 0 == b.stats(a.peer_id).bad_packets
