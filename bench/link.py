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

try:  # netplay's private aiortc/aioice hooks: one module since the wire-v2 clean-up
    from netplay import _aiortc as _ice
except ImportError:
    from netplay import _ice  # type: ignore[no-redef]
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

    def send_bulk(self, data: bytes) -> None:
        """Send on the reliable, ordered "bulk" channel (links opened with ``bulk=True``)."""

    def on_bulk(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback`` with each bulk message ``b`` receives."""


LinkFactory = Callable[..., AbstractAsyncContextManager[Link]]
"""``factory(conditioner, *, bulk=False, seed=1)`` opens a connected link whose both
directions use ``conditioner`` (seeded from ``seed``); with ``bulk`` it has a third, reliable
"bulk" channel for big transfers (raw aiortc: its own SCTP stream; netplay: a lane with a
priority below "events")."""


class AiortcLink:
    """Two raw ``RTCPeerConnection``s in this process with two negotiated channels, "state"
    (unordered, no retransmits) and "events" (reliable, ordered), as a hand-written aiortc game
    would make them; with ``bulk``, a third reliable ordered one (id 2) for big transfers."""

    def __init__(self, conditioner: ConditionerConfig | None = None, seed: int = 1,
                 bulk: bool = False) -> None:
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
            if bulk:
                self.channels[f"{name}.bulk"] = pc.createDataChannel(
                    "bulk", negotiated=True, id=2)

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

    def send_bulk(self, data: bytes) -> None:
        self.channels["a.bulk"].send(data)

    def on_bulk(self, callback: Callable[[bytes], None]) -> None:
        self.channels["b.bulk"].on("message", callback)

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


@asynccontextmanager
async def aiortc_link(conditioner: ConditionerConfig | None = None, *, bulk: bool = False,
                      seed: int = 1) -> AsyncIterator[Link]:
    """Raw aiortc: the baseline link."""
    link = AiortcLink(conditioner, seed=seed, bulk=bulk)
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
        return 1.0 - float((1.0 - p) ** 0.5)

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

    def send_bulk(self, data: bytes) -> None:
        self.a.channel("bulk").send(data)

    def on_bulk(self, callback: Callable[[bytes], None]) -> None:
        self.b.channel("bulk")._deliver = lambda peer, body: callback(body)


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


BULK_PRIORITY = -1
"""Priority of netplay's "bulk" lane (below "events", 0)."""


def netplay_channels(bulk: bool) -> tuple[Any, ...]:
    """netplay's default channels, plus a low-priority reliable "bulk" one with ``bulk``."""
    from netplay import ChannelConfig
    from netplay.config import DEFAULT_CHANNELS

    if not bulk:
        return DEFAULT_CHANNELS
    return (*DEFAULT_CHANNELS, ChannelConfig.reliable("bulk", priority=BULK_PRIORITY))


def end_conditioners(conditioner: ConditionerConfig | None, seed: int = 1
                     ) -> tuple[ConditionerConfig | None, ConditionerConfig | None]:
    """The conditioners of netplay's two meshes: each half of ``conditioner`` (see
    :func:`split_between_ends`), seeded differently (``seed``, ``seed + 1``) unless
    ``conditioner`` has its own seed (then ``seed`` is added to it)."""
    if conditioner is None:
        return None, None
    split = split_between_ends(conditioner)
    base = seed if split.seed is None else split.seed + seed
    return (dataclasses.replace(split, seed=base), dataclasses.replace(split, seed=base + 1))


@asynccontextmanager
async def netplay_link(conditioner: ConditionerConfig | None = None, *, bulk: bool = False,
                       seed: int = 1, send_rate_hz: float = 100_000.0) -> AsyncIterator[Link]:
    """netplay's async facade: A hosts, B joins, both wait for each other.

    ``send_rate_hz`` is raised far above any game's tick by default so the flat-out latency
    measures netplay's path, not its pacing (at 30 Hz the default would give the same
    figures); benchmarks of a game at 30 Hz on a bad network pass netplay's default.
    """
    from netplay import Mesh, MeshConfig

    ends = end_conditioners(conditioner, seed)
    url = lobby_url()
    async with AsyncExitStack() as stack:
        meshes = []
        for name, end in zip(("a", "b"), ends, strict=True):
            config = MeshConfig(lobby_url=url, name=name, ice_host_addresses=("127.0.0.1",),
                                conditioner=end, send_rate_hz=send_rate_hz,
                                channels=netplay_channels(bulk))
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
