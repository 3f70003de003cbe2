"""Helpers shared by the mesh tests: loopback-only configs and ready-made meshes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiortc import RTCPeerConnection

import netplay
from netplay.mesh import Mesh

LOOPBACK = ("127.0.0.1",)
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) ", re.MULTILINE)


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` on the event loop until it is truthy (deadline: ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not (value := condition()):
            await asyncio.sleep(0.005)
    return value


def config(lobby: Any, name: str, **overrides: Any) -> netplay.MeshConfig:
    """A MeshConfig for the test lobby with every ICE host candidate pinned to 127.0.0.1."""
    overrides.setdefault("ice_host_addresses", LOOPBACK)
    overrides.setdefault("connect_timeout", 10.0)
    return netplay.MeshConfig(lobby_url=lobby.url, name=name, **overrides)


def candidate_addresses(mesh: Mesh) -> list[str]:
    """Every address in an ``a=candidate`` line of every local and remote SDP of ``mesh``."""
    found = []
    for remote in mesh._remotes.values():
        link = remote.link
        if link is None:
            continue
        for description in (link.pc.localDescription, link.pc.remoteDescription):
            if description is not None:
                found += CANDIDATE.findall(description.sdp)
    return found


def assert_loopback_only(mesh: Mesh) -> None:
    """The guard: every candidate any test peer offered or accepted is 127.0.0.1."""
    addresses = candidate_addresses(mesh)
    assert addresses, "no candidates found (is the mesh connected?)"
    assert set(addresses) == {"127.0.0.1"}, addresses


@contextlib.asynccontextmanager
async def full_mesh(lobby: Any, n: int, *, timeout: float = 20.0, game: str = "test",
                    **overrides: Any) -> AsyncIterator[list[Mesh]]:
    """``n`` open meshes in one lobby (the first hosts), each connected to all others."""
    async with contextlib.AsyncExitStack() as stack:
        meshes = [await stack.enter_async_context(Mesh(config(lobby, f"p{i}", **overrides)))
                  for i in range(n)]
        info = await meshes[0].host(game=game, max_players=8)
        for mesh in meshes[1:]:
            await mesh.join(info.code)
        for mesh in meshes:
            await mesh.wait_for_peers(n - 1, timeout=timeout)
        for mesh in meshes:
            assert_loopback_only(mesh)
        yield meshes
    assert_clean_shutdown()


def open_peer_connections() -> list[RTCPeerConnection]:
    """Every RTCPeerConnection still alive in this process that is not closed."""
    return [o for o in gc.get_objects()
            if issubclass(type(o), RTCPeerConnection) and o.connectionState != "closed"]


def assert_clean_shutdown() -> None:
    """Once every mesh is closed: no asyncio task left but the caller's own, and no
    RTCPeerConnection (of this test or any earlier one) left open."""
    me = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not me]
    assert not left, f"tasks left running after close: {left}"
    still_open = open_peer_connections()
    assert not still_open, f"peer connections left open after close: {still_open}"
