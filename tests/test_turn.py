"""TURN end to end with a real coturn ``turnserver`` on loopback.

The lobby hands each player short-lived TURN REST API credentials minted from coturn's
``static-auth-secret`` (``use-auth-secret``); both players force ``ice_transport_policy="relay"``,
so every packet goes through the relay. No long-lived TURN password is in the game. coturn is
installed by ``.ci/run`` (Debian ``coturn``); without it these tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import netplay
from mesh_helpers import CANDIDATE, candidate_addresses, config
from netplay.mesh import Mesh

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("turnserver") is None,
                       reason="coturn's turnserver is not installed (.ci/run installs it)"),
]

SECRET = "netplay-turn-test-secret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stun_answers(port: int) -> bool:
    """True when something answers a STUN Binding request on 127.0.0.1:port."""
    request = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            reply, _ = sock.recvfrom(2048)
        except OSError:  # timeout, or ICMP port unreachable while it starts
            return False
    return reply[:2] == b"\x01\x01" and reply[8:20] == request[8:20]


@contextlib.contextmanager
def turnserver(log: pathlib.Path) -> Iterator[int]:
    """A real coturn on 127.0.0.1 (relaying only between loopback addresses)."""
    port = free_udp_port()
    relay = free_udp_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
             f"--listening-port={port}", f"--min-port={relay}", f"--max-port={relay + 50}",
             "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=netplay.test",
             "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-tcp", "--no-cli",
             "--fingerprint", "--no-multicast-peers", "--log-file=stdout", "--simple-log"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while not stun_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start:\n{log.read_text()[-2000:]}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_players_connect_through_turn_with_lobby_minted_credentials(
        lobby_factory: Any, tmp_path: pathlib.Path) -> None:
    with turnserver(tmp_path / "turnserver.log") as port:
        server = lobby_factory(turn_urls=(f"turn:127.0.0.1:{port}?transport=udp",),
                               turn_secret=SECRET, turn_ttl=600)
        async with contextlib.AsyncExitStack() as stack:
            a, b = [await stack.enter_async_context(
                Mesh(config(server, name, ice_transport_policy="relay")))
                for name in ("relay-a", "relay-b")]
            info = await a.host(game="turn-test")
            await b.join(info.code)
            await a.wait_for_peers(1, timeout=30)
            await b.wait_for_peers(1, timeout=30)
            # Only relayed candidates, all on the loopback relay.
            for mesh in (a, b):
                sdp = "\n".join(r.link.pc.localDescription.sdp
                                for r in mesh._remotes.values() if r.link is not None)
                assert CANDIDATE.findall(sdp) and " typ host" not in sdp, sdp
                assert " typ relay" in sdp
                assert set(candidate_addresses(mesh)) == {"127.0.0.1"}
            a.send_event({"via": "turn"})
            message = await b.wait_for(netplay.MessageReceived, timeout=10)
            assert message.body == {"via": "turn"} and message.peer_id == a.peer_id
            b.send_state({"x": 1})
            async with asyncio.timeout(10):
                while a.states().get(b.peer_id) != {"x": 1}:
                    await asyncio.sleep(0.01)
