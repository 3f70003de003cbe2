"""A mesh across separate OS processes, and a peer killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from mesh_helpers import assert_loopback_only, config

import netplay
from netplay.mesh import Mesh

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

SCRIPT = Path(__file__).with_name("peer_process.py")


class PeerProcess:
    """tests/peer_process.py in a subprocess, with its JSON reports readable by deadline."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.reports: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, lobby_url: str, name: str, *args: str) -> PeerProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), "--lobby", lobby_url, "--name", name, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        return cls(proc)

    async def expect(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        """The first report of ``event`` with the given fields (read or still to come)."""
        def found() -> dict[str, Any] | None:
            return next((r for r in self.reports if r["event"] == event
                         and all(r.get(k) == v for k, v in match.items())), None)
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while (report := found()) is None:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"process exited before {event} {match}: "
                                         f"{self.reports}")
                self.reports.append(json.loads(line))
        return report

    async def quit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.expect("closed")
        return await asyncio.wait_for(self.proc.wait(), 10)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


async def test_three_process_mesh_and_kill_minus_nine(lobby: Any) -> None:
    async with Mesh(config(lobby, "local")) as mesh:
        info = await mesh.host(game="processes")
        bob = await PeerProcess.start(lobby.url, "bob", "--join", info.code, "--peers", "2")
        carol = await PeerProcess.start(lobby.url, "carol", "--join", info.code, "--peers", "2")
        try:
            bob_id = (await bob.expect("ready"))["peer_id"]
            carol_id = (await carol.expect("ready"))["peer_id"]
            await mesh.wait_for_peers(2, timeout=30)
            assert_loopback_only(mesh)
            for proc, other in ((bob, carol_id), (carol, bob_id)):
                assert (await proc.expect("connected"))["peers"] == sorted([mesh.peer_id, other])
                await proc.expect("message", peer=other, body={"hello": "carol" if proc is bob
                                                                else "bob"})
                await proc.expect("state", peer=other)
            mesh.send_event("from the test process")
            for proc in (bob, carol):
                await proc.expect("message", peer=mesh.peer_id, body="from the test process")
            greetings = {(await mesh.wait_for(netplay.MessageReceived, timeout=10)).peer_id
                         for _ in range(2)}
            assert greetings == {bob_id, carol_id}
            async with asyncio.timeout(10):
                while set(mesh.states()) != {bob_id, carol_id}:
                    await asyncio.sleep(0.01)

            await carol.kill()  # SIGKILL: no goodbye, no lobby leave
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            # the docs promise PeerLeft within 3 s of a crash with the default settings
            left = await mesh.wait_for(netplay.PeerLeft, timeout=3.0)
            assert left == netplay.PeerLeft(carol_id, "timed_out")
            assert loop.time() - killed_at <= 3.0
            report = await bob.expect("left", timeout=3.0 - (loop.time() - killed_at),
                                      peer=carol_id)
            assert report["reason"] == "timed_out"
            assert mesh.peers == [bob_id]
            mesh.send_event("still here")
            await bob.expect("message", peer=mesh.peer_id, body="still here")
            assert await bob.quit() == 0
            left = await mesh.wait_for(netplay.PeerLeft, timeout=5)
            assert left == netplay.PeerLeft(bob_id, "left")
        finally:
            await bob.kill()
            await carol.kill()
