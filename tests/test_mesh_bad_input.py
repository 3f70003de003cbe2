"""Bad input from a peer that aiortc or msgpack would mishandle: unknown channels, hostile sizes."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import msgpack
import pytest
from mesh_helpers import config, eventually, full_mesh

import netplay
from netplay import wire
from netplay.errors import ProtocolError
from netplay.lanes import Inbound, lane_specs
from netplay.mesh import Mesh

pytestmark = pytest.mark.timeout(60)


async def test_data_on_an_unknown_lane_or_stream_is_counted_and_logged_once(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    three = (*netplay.DEFAULT_CHANNELS, netplay.ChannelConfig.reliable("extra"))
    async with Mesh(config(lobby, "three", channels=three)) as a, \
            Mesh(config(lobby, "two")) as b:
        info = await a.host(game="test")
        await b.join(info.code)
        await a.wait_for_peers(1)
        await b.wait_for_peers(1)
        with caplog.at_level(logging.WARNING, logger="netplay"):
            for i in range(3):  # a's channel 2 is a lane b does not have
                assert a.channel("extra").send({"i": i})
            await eventually(lambda: b.stats(a.peer_id).bad_packets == 3)
            # the mesh keeps working, both ways
            a.send_event("after")
            ev = await b.wait_for(netplay.MessageReceived, timeout=5)
            assert (ev.channel, ev.body) == ("events", "after")
            b.send_event("back")
            ev = await a.wait_for(netplay.MessageReceived, timeout=5)
            assert (ev.channel, ev.body) == ("events", "back")
            # b acknowledged the records it could not use: a does not resend them forever
            await eventually(lambda: a._remotes[b.peer_id].outbound.idle())
            # an SCTP stream id with no channel at all (aiortc would drop it silently)
            a_link = a._remotes[b.peer_id].link
            assert a_link is not None
            rogue = a_link.pc.createDataChannel("rogue", negotiated=True, id=3)
            await eventually(lambda: rogue.readyState == "open")
            rogue.send(b"\x02hello")
            await eventually(lambda: b.stats(a.peer_id).bad_packets == 4)
        warnings = [r for r in caplog.records
                    if r.levelno == logging.WARNING and "bad packet" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "lane 2, which is not a lane" in warnings[0].getMessage()
        assert b.stats(a.peer_id).bad_packets == 4
        assert a.stats(b.peer_id).bad_packets == 0
        assert b.peers == [a.peer_id] and a.peers == [b.peer_id]
        # aiortc created no channel for the unknown stream
        link = b._remotes[a.peer_id].link
        assert link is not None and sorted(link.pc.sctp._data_channels) == [0]


def hostile_payloads(size: int) -> dict[str, bytes]:
    """msgpack payloads of at most ``size`` bytes that decode to millions of empty containers."""

    def nested(element: bytes, per_array: int) -> bytes:  # arrays of ``per_array`` elements
        inner = b"\xdd" + per_array.to_bytes(4, "big") + element * per_array
        k = (size - 3) // len(inner)
        return b"\xdc" + k.to_bytes(2, "big") + inner * k

    n = size - 5
    return {
        # one array32 header claiming n elements, then n empty arrays (0x90)
        "flat": b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n,
        # the same within the length limits: arrays of 1 Mi empty arrays
        "nested": nested(b"\x90", 1 << 20),
        # maps cost even more per byte: {0: 0} is 3 bytes
        "maps": nested(b"\x81\x00\x00", 1 << 18),
    }


@pytest.mark.parametrize("kind", ["flat", "nested", "maps"])
def test_hostile_reassembled_message_is_rejected_without_allocating_much(kind: str) -> None:
    # 16 MiB was the old default max_message_size; naively, "flat" decodes to 16 Mi lists
    # (about 1 GiB), and "nested" passes msgpack's own limits, which grow with the payload.
    size = 16 * 1024 * 1024
    limits = netplay.MeshConfig(lobby_url="ws://127.0.0.1:1/ws",
                                max_message_size=size).unpack_limits()
    payload = hostile_payloads(size)[kind]
    count = -(-len(payload) // 60_000)
    records = [wire.Record(i, 1, 0, payload[i * 60_000:(i + 1) * 60_000], i, count)
               for i in range(count)]
    inbound = Inbound(lane_specs(netplay.DEFAULT_CHANNELS), limits)
    inbound.on_epoch(1)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            for record in records:
                inbound.receive(record)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the joined payload alone is 16 MiB; the objects decoded stay a small fraction of 1 GiB
    assert peak < 128 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    # a legitimate message of the same size still decodes
    good = msgpack.packb([b"x" * (size - 100)])
    inbound.receive(wire.Record(count, 1, 1, good[:100], 0, 2))
    assert inbound.receive(wire.Record(count + 1, 1, 1, good[100:], 1, 2)) == [
        (1, [b"x" * (size - 100)])]


def test_unpack_limits_default_and_lower_max_message_size() -> None:
    config = netplay.MeshConfig(lobby_url="ws://127.0.0.1:1/ws")
    assert config.max_message_size == 8 * 1024 * 1024  # a 4 MiB event fits (test_mesh.py)
    with pytest.raises(ProtocolError, match="max_array_len"):
        wire.unpack_body(b"\xdd\xff\xff\xff\xff" + b"\x90" * 70_000, config.unpack_limits())
    with pytest.raises(ValueError, match="max_containers"):
        netplay.MeshConfig(lobby_url="ws://127.0.0.1:1/ws", max_containers=0)


async def test_hostile_message_from_a_peer_is_counted_and_the_mesh_keeps_working(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with full_mesh(lobby, 2) as (a, b):
        payload = hostile_payloads(2 * 1024 * 1024)["nested"]
        raw = b._remotes[a.peer_id].link.channel  # type: ignore[union-attr]
        epoch = b._remotes[a.peer_id].outbound.epoch  # forged records in b's own stream
        count = -(-len(payload) // 16_000)
        with caplog.at_level(logging.WARNING, logger="netplay"):
            for i in range(count):  # record ids far above b's, lane sequence never used
                piece = wire.pack_fragment_record(1000 + i, 1, 999, payload[i * 16_000:][:16_000],
                                                  i, count)
                raw.send(wire.pack_head(0, 1.0, None, None) + wire.pack_tail(epoch, None, [piece]))
                # unreliable stream: blasting 2 MiB at once could overflow a socket buffer
                await eventually(lambda: raw.bufferedAmount == 0)
            await eventually(lambda: a.stats(b.peer_id).bad_packets == 1, timeout=30)
        assert any("max_containers" in r.getMessage() for r in caplog.records)
        b.send_event("still works")
        ev = await a.wait_for(netplay.MessageReceived, timeout=10)
        assert ev.body == "still works"
        assert a.peers == [b.peer_id] and a.stats(b.peer_id).bad_packets == 1
