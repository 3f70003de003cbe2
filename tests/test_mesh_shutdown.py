"""Clean shutdown: once meshes are closed, no task and no peer connection is left behind.

``full_mesh`` runs the same check after every test that uses it; these cover the cases it
can't: closing in the middle of a connection attempt, and the sync facade's loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from mesh_helpers import assert_clean_shutdown, config, eventually, open_peer_connections

import netplay
from netplay.conditioner import ConditionerConfig
from netplay.mesh import Mesh

pytestmark = pytest.mark.timeout(60)


async def test_the_check_sees_a_peer_connection_left_open() -> None:
    pc = RTCPeerConnection()
    try:
        assert pc in open_peer_connections()
        with pytest.raises(AssertionError, match="left open"):
            assert_clean_shutdown()
    finally:
        await pc.close()
    assert_clean_shutdown()


async def test_the_check_sees_a_task_left_running() -> None:
    task = asyncio.create_task(asyncio.Event().wait(), name="leftover")
    try:
        with pytest.raises(AssertionError, match="leftover"):
            assert_clean_shutdown()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert_clean_shutdown()


async def test_closing_while_a_connection_attempt_is_under_way(lobby: Any) -> None:
    black_hole = ConditionerConfig(loss=1.0)  # ICE gets through, DTLS never does
    async with Mesh(config(lobby, "a", connect_timeout=30.0)) as a, \
            Mesh(config(lobby, "b", connect_timeout=30.0, conditioner=black_hole)) as b:
        info = await a.host(game="interrupted")
        await b.join(info.code)
        # close as soon as both sides have a link trying to connect: aioice's connect() is
        # then still running (and used to start its consent task after the close)
        await eventually(lambda: all(r.link is not None for m in (a, b)
                                     for r in m._remotes.values()) and a._remotes and b._remotes)
        assert a.peers == [] and b.peers == []
    assert_clean_shutdown()


def test_sync_mesh_close_leaves_no_thread_and_no_connection(lobby: Any) -> None:
    threads = set(threading.enumerate())
    with netplay.SyncMesh(config(lobby, "a")) as a, netplay.SyncMesh(config(lobby, "b")) as b:
        code = a.host(game="sync-close").result(timeout=10).code
        b.join(code).result(timeout=10)
        a.wait_for_peers(1, timeout=15).result(timeout=20)
        b.wait_for_peers(1, timeout=15).result(timeout=20)
        assert len(open_peer_connections()) == 2
    assert set(threading.enumerate()) <= threads
    assert open_peer_connections() == []
    for mesh in (a, b):
        assert mesh._loop is not None and mesh._loop.is_closed()


async def test_a_signal_from_a_link_still_connecting_after_close_is_dropped_quietly(
        lobby: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Mesh.close marks the mesh closed, then says goodbye for a moment; a supervisor that
    # re-offers in that window must not raise "the Mesh is closed" out of its task.
    from netplay.protocol import OfferPayload

    mesh = Mesh(config(lobby, "closing"))
    async with mesh:
        await mesh.host(game="close-race")
    remote = mesh._plane.add_remote("someone", "x", offerer=True)
    with caplog.at_level(logging.DEBUG, logger="netplay.mesh"):
        await mesh._links.signal(remote, OfferPayload(sdp="v=0"))
    assert "signal to someone not sent: the Mesh is closed" in caplog.text
