"""The system-under-test slot: a two-peer link, and raw aiortc's implementation of it.

Every pair benchmark (latency, throughput, CPU, impaired network) is written against
:class:`Link`, so a netplay variant only needs a :data:`LinkFactory` (for example two
``netplay.Mesh`` objects in one lobby) registered in :data:`FACTORIES`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

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


FACTORIES: dict[str, LinkFactory] = {"aiortc": aiortc_link}
"""Systems under test by name; netplay variants register here when the mesh lands."""
