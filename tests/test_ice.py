"""ICE host-address pinning and the loopback guard on real peers' SDP."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_helpers import candidate_addresses, config, full_mesh

import netplay
from netplay import _aiortc
from netplay.mesh import Mesh
from netplay.protocol import CandidatePayload

pytestmark = pytest.mark.timeout(60)


async def test_every_candidate_of_a_test_peer_is_loopback(lobby: Any) -> None:
    async with full_mesh(lobby, 3) as meshes:
        for mesh in meshes:
            addresses = candidate_addresses(mesh)
            # two links per mesh, local and remote SDP each: at least 4 candidates
            assert len(addresses) >= 4 and set(addresses) == {"127.0.0.1"}, addresses
            for remote in mesh._remotes.values():
                assert remote.link is not None
                # never aiortc's default public STUN server: no ICE servers at all
                assert remote.link.pc._RTCPeerConnection__configuration.iceServers == []
                assert "typ srflx" not in remote.link.pc.localDescription.sdp


def test_host_addresses_resolve_interfaces_and_reject_unknown_names() -> None:
    assert _aiortc.resolve_host_addresses(["127.0.0.1", "lo", "127.0.0.1"])[0] == "127.0.0.1"
    with pytest.raises(ValueError, match="neither an IP address nor a network interface"):
        _aiortc.resolve_host_addresses(["no-such-interface0"])


def test_bad_host_address_is_refused_when_the_mesh_is_made(lobby: Any) -> None:
    with pytest.raises(ValueError, match="no-such-interface0"):
        Mesh(config(lobby, "x", ice_host_addresses=("no-such-interface0",)))


async def test_trickled_candidates_from_a_browser_are_accepted(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with full_mesh(lobby, 2) as (a, b):
        link = a._remotes[b.peer_id].link
        assert link is not None
        line = next(row for row in link.pc.remoteDescription.sdp.splitlines()
                    if row.startswith("a=candidate:"))
        mid = link.pc.remoteDescription.sdp.split("a=mid:")[1].split()[0]
        for text in ("candidate:" + line[len("a=candidate:"):], "garbage", ""):
            await link.add_candidate(CandidatePayload(candidate=text, sdp_mid=mid,
                                                      sdp_mline_index=0, attempt=link.attempt))
        assert [r.getMessage() for r in caplog.records
                if "malformed ICE candidate" in r.getMessage()] == [
            f"ignoring malformed ICE candidate from {b.peer_id}"]
        a.send_event("still connected")
        assert (await b.wait_for(netplay.MessageReceived)).body == "still connected"
