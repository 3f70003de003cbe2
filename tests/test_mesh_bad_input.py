"""Bad input from a peer that aiortc or msgpack would mishandle: unknown channels, hostile sizes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mesh_helpers import config, eventually

import netplay
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
