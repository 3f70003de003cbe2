"""State over a link slower than the game sends: coalesce, never build latency (issue 4).

The conditioner caps a's links at 64 kbit/s (8 kB/s) with its default 64 kB bottleneck queue
(8 s of data: a bufferbloated link). The game sends 60 states a second of about 900 bytes that
don't delta-compress (54 kB/s), so at most about 9 a second can cross. netplay must send only
the newest pending state when earlier ones haven't drained, so what arrives stays fresh.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from mesh_helpers import eventually, full_mesh

import netplay

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

SECONDS = 3.0
HZ = 60.0


async def test_capped_bandwidth_coalesces_states_without_latency_build_up(lobby: Any) -> None:
    async with full_mesh(lobby, 2) as (a, b):
        # a knows the link's round trip before it slows down (as a game would)
        await eventually(lambda: a.stats(b.peer_id).rtt_ms is not None)
        a.set_conditioner(netplay.ConditionerConfig(bandwidth_kbps=64))
        arrivals: list[tuple[float, int, float]] = []  # (arrival, tick, sent)
        end = time.monotonic() + SECONDS
        sent_ticks = 0

        async def send() -> None:
            nonlocal sent_ticks
            while time.monotonic() < end:
                sent_ticks += 1
                a.send_state({"tick": sent_ticks, "sent": time.monotonic(),
                              "noise": os.urandom(850)})  # new bytes every time: no delta
                await asyncio.sleep(1 / HZ)

        async def watch() -> None:
            while time.monotonic() < end + 1.0:
                now = time.monotonic()
                arrivals.extend((now, s["tick"], s["sent"]) for _, s in b.channel("state").receive())
                await asyncio.sleep(0.002)

        await asyncio.gather(send(), watch())
        ticks = [tick for _, tick, _ in arrivals]
        assert len(ticks) >= 5 * SECONDS, f"only {len(ticks)} states crossed"
        assert ticks == sorted(set(ticks)), "received ticks must increase"
        assert len(ticks) < 0.5 * sent_ticks, "the link can't carry every state: some coalesce"
        # staleness: how old each state is when it arrives. Serialising one 900-byte
        # datagram at 8 kB/s takes 0.11 s; a latency build-up reached 2 s within 3 s.
        staleness = [arrival - sent for arrival, _, sent in arrivals]
        late = staleness[len(staleness) // 2:]
        assert max(late) < 0.8, [(t, round(s, 2)) for (_, t, _), s in zip(arrivals, staleness)]
        # ... and the newest tick received keeps close to the newest tick sent
        final = [tick for arrival, tick, _ in arrivals if arrival <= end]
        assert final and sent_ticks - final[-1] < 0.8 * HZ, (sent_ticks, final[-5:])
        stats = b.stats(a.peer_id)
        assert stats.bad_packets == 0
