"""Event order a game can rely on: a peer's PeerJoined comes before its first message."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from mesh_helpers import config

import netplay
from netplay.conditioner import ConditionerConfig
from netplay.mesh import Mesh

pytestmark = pytest.mark.timeout(120)


async def test_peer_joined_always_precedes_that_peers_first_message(lobby: Any) -> None:
    # Everyone sends events as fast as the loop turns, from before their links open, so the
    # first messages travel right behind the SCTP handshake that opens the receiver's link.
    # A fixed 20 ms delay (the conditioner's timer releases what is due together) hands the
    # handshake's last packet and those first messages to aiortc in one batch.
    delayed = ConditionerConfig(latency_ms=20, seed=3)
    for round_ in range(3):
        async with contextlib.AsyncExitStack() as stack:
            meshes = [await stack.enter_async_context(Mesh(config(lobby, f"o{round_}{i}",
                                                                  conditioner=delayed)))
                      for i in range(4)]
            logs: list[list[netplay.Event]] = [[] for _ in meshes]

            def collect() -> None:  # every event, in emission order (as SyncMesh.poll sees them)
                for mesh, log in zip(meshes, logs, strict=True):
                    log.extend(mesh._stream.drain())

            async def chatter(mesh: Mesh) -> None:
                while True:
                    mesh.send_event({"from": mesh.peer_id})
                    await asyncio.sleep(0)

            tasks = [asyncio.create_task(chatter(m)) for m in meshes]
            try:
                info = await meshes[0].host(game="order", max_players=4)
                for mesh in meshes[1:]:
                    await mesh.join(info.code)
                async with asyncio.timeout(20):  # everyone got messages from all three others
                    while collect() or any(len({e.peer_id for e in log
                                                if isinstance(e, netplay.MessageReceived)}) < 3
                                           for log in logs):
                        await asyncio.sleep(0.01)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for log in logs:
                joined: set[str] = set()
                for event in log:
                    if isinstance(event, netplay.PeerJoined):
                        joined.add(event.peer_id)
                    elif isinstance(event, netplay.MessageReceived):
                        assert event.peer_id in joined, [type(e).__name__ for e in log[:20]]
                assert len(joined) == 3
