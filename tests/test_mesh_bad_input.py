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
from netplay.mesh import Mesh

pytestmark = pytest.mark.timeout(60)


async def test_data_on_an_unknown_channel_is_counted_and_logged_once(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    three = (*netplay.DEFAULT_CHANNELS, netplay.ChannelConfig.reliable("extra"))
    async with Mesh(config(lobby, "three", channels=three)) as a, \
            Mesh(config(lobby, "two")) as b:
        info = await a.host(game="test")
        await b.join(info.code)
        await a.wait_for_peers(1)
        await b.wait_for_peers(1)
        with caplog.at_level(logging.WARNING, logger="netplay"):
            for i in range(3):  # a's channel 2 is a stream id b has no channel for
                assert a.channel("extra").send({"i": i})
            await eventually(lambda: b.stats(a.peer_id).bad_packets == 3)
            # the mesh keeps working, both ways
            a.send_event("after")
            ev = await b.wait_for(netplay.MessageReceived, timeout=5)
            assert (ev.channel, ev.body) == ("events", "after")
            b.send_event("back")
            ev = await a.wait_for(netplay.MessageReceived, timeout=5)
            assert (ev.channel, ev.body) == ("events", "back")
        warnings = [r for r in caplog.records
                    if r.levelno == logging.WARNING and "bad packet" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "unknown channel id 2" in warnings[0].getMessage()
        assert b.stats(a.peer_id).bad_packets == 3
        assert a.stats(b.peer_id).bad_packets == 0
        assert b.peers == [a.peer_id] and a.peers == [b.peer_id]
        # aiortc created no channel for the unknown stream
        link = b._remotes[a.peer_id].link
        assert link is not None and sorted(link.pc.sctp._data_channels) == [0, 1]


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
    frames = [wire.fragment(payload, 7, offset, 60_000) for offset in range(0, len(payload), 60_000)]
    reassembler = wire.Reassembler(size, limits)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            for frame in frames:
                reassembler.feed(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the joined payload alone is 16 MiB; the objects decoded stay a small fraction of 1 GiB
    assert peak < 128 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    # a legitimate message of the same size still decodes
    assert wire.Reassembler(size, limits).feed(
        b"\x01" + msgpack.packb([b"x" * (size - 100)]))[1] == [b"x" * (size - 100)]


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
        raw = b._remotes[a.peer_id].link.channels[1]  # type: ignore[union-attr]
        with caplog.at_level(logging.WARNING, logger="netplay"):
            for offset in range(0, len(payload), 16_000):
                raw.send(wire.fragment(payload, 1, offset, 16_000))
            await eventually(lambda: a.stats(b.peer_id).bad_packets == 1, timeout=30)
        assert any("max_containers" in r.getMessage() for r in caplog.records)
        b.send_event("still works")
        ev = await a.wait_for(netplay.MessageReceived, timeout=10)
        assert ev.body == "still works"
        assert a.peers == [b.peer_id] and a.stats(b.peer_id).bad_packets == 1
