"""The public side of NAT traversal that runs without root: ``CandidatePair``, the
``PeerLeft.detail`` and ``PeersNotConnected`` (the namespace scenarios are in test_nat.py)."""

from __future__ import annotations

from typing import Any

import pytest

import netplay
from mesh_helpers import config, full_mesh
from netplay.mesh import Mesh
from netplay.stats import StatsTracker

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("local", "remote", "kind", "relayed"), [
    ("host", "host", "host", False),
    ("host", "srflx", "srflx", False),
    ("prflx", "host", "prflx", False),
    ("srflx", "prflx", "srflx", False),
    ("host", "relay", "relay", True),
    ("relay", "srflx", "relay", True),
])
def test_candidate_pair_kind_is_the_more_indirect_end(local: Any, remote: Any, kind: str,
                                                      relayed: bool) -> None:
    pair = netplay.CandidatePair(local, ("192.168.1.2", 5000), remote, ("203.0.113.12", 6000))
    assert pair.kind == kind and pair.relayed is relayed
    assert str(pair) == (f"{kind} 192.168.1.2:5000 ({local}) -> 203.0.113.12:6000 ({remote})")


def test_summary_names_the_path() -> None:
    tracker = StatsTracker()
    assert tracker.snapshot(1.0).summary().endswith("path -")
    tracker.candidate_pair = netplay.CandidatePair("relay", ("203.0.113.1", 49152), "srflx",
                                                   ("203.0.113.12", 6000))
    stats = tracker.snapshot(1.0)
    assert stats.candidate_pair == tracker.candidate_pair
    assert stats.summary().endswith("path relay")


def test_peer_left_detail_is_for_people_not_for_equality() -> None:
    left = netplay.PeerLeft("p1", "connection_failed", "a TURN server is needed")
    assert left == netplay.PeerLeft("p1", "connection_failed")
    assert left.detail == "a TURN server is needed"
    assert netplay.PeerLeft("p1", "left").detail == ""


async def test_connected_peers_report_their_candidate_pair(lobby: Any) -> None:
    async with full_mesh(lobby, 2) as (a, b):
        for mesh, other in ((a, b), (b, a)):
            pair = mesh.stats(other.peer_id).candidate_pair
            assert pair is not None, mesh.stats(other.peer_id)
            assert pair.kind == "host" and not pair.relayed  # both pinned to 127.0.0.1
            assert pair.local_address[0] == pair.remote_address[0] == "127.0.0.1"
        ports = {a.stats(b.peer_id).candidate_pair.local_address[1],  # type: ignore[union-attr]
                 b.stats(a.peer_id).candidate_pair.remote_address[1]}  # type: ignore[union-attr]
        assert len(ports) == 1  # what a sends from is what b sends to


async def test_wait_for_peers_raises_a_typed_error_saying_what_is_missing(lobby: Any) -> None:
    async with Mesh(config(lobby, "alone")) as mesh:
        await mesh.host(game="nobody-comes")
        with pytest.raises(netplay.PeersNotConnected) as caught:
            await mesh.wait_for_peers(1, timeout=0.2)
    error = caught.value
    assert isinstance(error, TimeoutError) and isinstance(error, netplay.NetplayError)
    assert (error.wanted, error.connected, error.failures) == (1, [], {})
    assert str(error) == ("0 of 1 peer(s) connected after 0.2 s; no peer failed (still "
                          "connecting, or too few joined)")


async def test_a_failed_peer_is_named_with_its_reason(lobby: Any) -> None:
    from netplay.conditioner import ConditionerConfig

    black_hole = ConditionerConfig(loss=1.0)  # ICE works, DTLS never gets through
    async with Mesh(config(lobby, "a", connect_timeout=1.0, reconnect_attempts=1)) as a, \
            Mesh(config(lobby, "b", connect_timeout=1.0, reconnect_attempts=1,
                        conditioner=black_hole)) as b:
        info = await a.host(game="doomed")
        await b.join(info.code)
        left = await a.wait_for(netplay.PeerLeft, timeout=15)
        assert left.reason == "connection_failed"
        assert left.detail == "no link after 2 attempts (the last: connect timeout)"
        with pytest.raises(netplay.PeersNotConnected) as caught:
            await a.wait_for_peers(1, timeout=0.1)
    assert caught.value.failures == {b.peer_id: left.detail}
    assert str(caught.value).endswith(f"; peer {b.peer_id}: {left.detail}")
