"""The system-under-test slot: a two-peer link, and raw aiortc's implementation of it.

Every pair benchmark (latency, throughput, CPU, impaired network) is written against
:class:`Link`, so a netplay variant only needs a :data:`LinkFactory` (for example two
``netplay.Mesh`` objects in one lobby) registered in :data:`FACTORIES`.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, ExitStack, asynccontextmanager
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from netplay import _ice
from netplay.conditioner import ConditionerConfig, attach


class Link(Protocol):
    """Peer ``a`` sends to peer ``b``; the benchmark installs ``b``'s receive callbacks."""

    def send_state(self, data: bytes) -> None:
        """Send on the unreliable, unordered channel (never blocks)."""

    def send_event(self, data: bytes) -> None:
        """Send on the reliable, ordered channel (never blocks)."""

    def on_state(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback`` with each state message ``b`` receives."""

    def on_event(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback`` with each event message ``b`` receives."""


LinkFactory = Callable[[ConditionerConfig | None], AbstractAsyncContextManager[Link]]
"""``factory(conditioner)`` opens a connected link whose both directions use ``conditioner``."""


class AiortcLink:
    """Two raw ``RTCPeerConnection``s in this process with netplay's two negotiated channels."""

    def __init__(self, conditioner: ConditionerConfig | None = None, seed: int = 1) -> None:
        self.a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if conditioner is not None:
            attach(self.a, conditioner, None, seed=seed)
            attach(self.b, conditioner, None, seed=seed + 1)
        self.channels: dict[str, RTCDataChannel] = {}
        for name, pc in (("a", self.a), ("b", self.b)):
            self.channels[f"{name}.state"] = pc.createDataChannel(
                "state", ordered=False, maxRetransmits=0, negotiated=True, id=0)
            self.channels[f"{name}.events"] = pc.createDataChannel(
                "events", negotiated=True, id=1)

    async def connect(self, timeout: float = 20.0) -> float:
        """Negotiate on 127.0.0.1; return seconds from createOffer to all channels open."""
        start = time.perf_counter()
        opened = asyncio.get_running_loop().create_future()
        remaining = set(self.channels.values())

        def on_open(channel: RTCDataChannel) -> None:
            remaining.discard(channel)
            if not remaining and not opened.done():
                opened.set_result(time.perf_counter())

        for channel in self.channels.values():
            channel.on("open", lambda c=channel: on_open(c))
        with _ice.host_addresses(["127.0.0.1"]):
            await self.a.setLocalDescription(await self.a.createOffer())
        await self.b.setRemoteDescription(self.a.localDescription)
        with _ice.host_addresses(["127.0.0.1"]):
            await self.b.setLocalDescription(await self.b.createAnswer())
        await self.a.setRemoteDescription(self.b.localDescription)
        done: float = await asyncio.wait_for(opened, timeout)
        return done - start

    def send_state(self, data: bytes) -> None:
        self.channels["a.state"].send(data)

    def send_event(self, data: bytes) -> None:
        self.channels["a.events"].send(data)

    def on_state(self, callback: Callable[[bytes], None]) -> None:
        self.channels["b.state"].on("message", callback)

    def on_event(self, callback: Callable[[bytes], None]) -> None:
        self.channels["b.events"].on("message", callback)

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


@asynccontextmanager
async def aiortc_link(conditioner: ConditionerConfig | None = None) -> AsyncIterator[Link]:
    """Raw aiortc: the baseline link."""
    link = AiortcLink(conditioner)
    try:
        await link.connect()
        yield link
    finally:
        await link.close()


def split_between_ends(config: ConditionerConfig) -> ConditionerConfig:
    """The config that, applied on *both* ends of a direction, gives ``config`` once.

    A netplay mesh applies its conditioner to each peer's outbound *and* inbound packets, so a
    packet from A to B passes it twice (A out, B in). Halving the delay and taking
    ``1 - sqrt(1 - p)`` of each probability makes the direction match the raw aiortc baseline,
    which conditions each direction once.
    """
    def half(p: float) -> float:
        return 1.0 - (1.0 - p) ** 0.5

    return dataclasses.replace(
        config, latency_ms=config.latency_ms / 2, jitter_ms=config.jitter_ms / 2,
        loss=half(config.loss), duplicate=half(config.duplicate), reorder=half(config.reorder))


class NetplayLink:
    """Two ``netplay.Mesh`` peers in one lobby (the async facade).

    Receive callbacks replace each channel's delivery queue (``Channel._deliver``), so the
    benchmark sees a message the moment netplay hands it to the game, with nothing queued.
    """

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def send_state(self, data: bytes) -> None:
        self.a.send_state(data)

    def send_event(self, data: bytes) -> None:
        self.a.send_event(data)

    def on_state(self, callback: Callable[[bytes], None]) -> None:
        self.b.channel("state")._deliver = lambda peer, body: callback(body)

    def on_event(self, callback: Callable[[bytes], None]) -> None:
        self.b.channel("events")._deliver = lambda peer, body: callback(body)


_lobby: ExitStack | None = None
_lobby_url = ""


def lobby_url() -> str:
    """URL of a lobby process shared by this (child) process, started on first use."""
    global _lobby, _lobby_url
    if _lobby is None:
        from bench.lobby import lobby_process

        _lobby = ExitStack()
        port, _ = _lobby.enter_context(lobby_process())
        atexit.register(_lobby.close)
        _lobby_url = f"ws://127.0.0.1:{port}/ws"
    return _lobby_url


@asynccontextmanager
async def netplay_link(conditioner: ConditionerConfig | None = None) -> AsyncIterator[Link]:
    """netplay's async facade: A hosts, B joins, both wait for each other.

    ``send_rate_hz`` is raised far above any game's tick so the flat-out latency measures
    netplay's path, not its pacing (at 30 Hz the default would give the same figures).
    """
    from netplay import Mesh, MeshConfig

    split = split_between_ends(conditioner) if conditioner is not None else None
    url = lobby_url()
    async with AsyncExitStack() as stack:
        meshes = []
        for name in ("a", "b"):
            config = MeshConfig(lobby_url=url, name=name, ice_host_addresses=("127.0.0.1",),
                                conditioner=split, send_rate_hz=100_000.0)
            meshes.append(await stack.enter_async_context(Mesh(config)))
        a, b = meshes
        info = await a.host(game="bench", public=False)
        await b.join(info.code)
        # Generous: under loss, a lost DTLS flight costs a 1 s (then 2 s, ...) retransmission.
        await a.wait_for_peers(1, timeout=60)
        await b.wait_for_peers(1, timeout=60)
        yield NetplayLink(a, b)


FACTORIES: dict[str, LinkFactory] = {"aiortc": aiortc_link, "netplay_async": netplay_link}
"""Systems under test by name."""
