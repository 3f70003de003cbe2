"""Bytes per snapshot on the demo's scene, full vs delta-encoded.

An 8-player match of the demo (``examples/squares``, installed as ``netplay_demo``): eight bots
play one simulated world at 30 Hz for 20 seconds; every player's snapshot each tick
(``game.local_state``) is packed whole and as a delta (``netplay.delta.diff``) against that
player's snapshot two ticks earlier (the acknowledged baseline, an ack one round trip behind).
Payload bytes only (msgpack); the datagram envelope is the same for both.
"""

from __future__ import annotations

import random

from bench.harness import Benchmark, Context, Row, Target

HZ = 30
ACK_LAG = 2


def run_bandwidth(ctx: Context) -> dict[str, float]:
    from netplay_demo import game
    from netplay_demo.bots import Bot

    from netplay.delta import diff, packed_size

    ids = [f"p{slot}" for slot in range(8)]
    world = game.World(me=ids[0], host_id=ids[0], rng=random.Random(1))
    for slot, peer_id in enumerate(ids):
        game.add_player(world, peer_id, f"player {slot}", slot)
    bots = {peer_id: Bot(rng=random.Random(slot)) for slot, peer_id in enumerate(ids)}
    sent: dict[str, list[dict[str, object]]] = {peer_id: [] for peer_id in ids}
    full = delta = count = 0
    for _ in range(20 * HZ):
        inputs = {}
        for peer_id in ids:  # each bot sees the world as its own peer would
            world.me = peer_id
            inputs[peer_id] = bots[peer_id].controls(world, 1 / HZ)
        world.me = ids[0]  # the host spawns gems
        game.step(world, inputs, 1 / HZ)
        for peer_id in ids:
            world.me = peer_id
            state = game.local_state(world)
            history = sent[peer_id]
            full += packed_size(state)
            delta += packed_size(diff(history[-ACK_LAG], state)) if len(history) >= ACK_LAG \
                else packed_size(state)
            history.append(state)
            count += 1
    return {"bandwidth.full_bytes": full / count, "bandwidth.delta_bytes": delta / count,
            "bandwidth.delta_ratio": delta / full}


BENCHMARKS = [
    Benchmark("bandwidth", run_bandwidth, runs=1, rows=(
        Row("demo snapshot, full", "bandwidth.full_bytes", "B"),
        Row("demo snapshot, delta", "bandwidth.delta_bytes", "B", "bandwidth.full_bytes",
            Target("<=", 0.35, True), "bandwidth.delta_ratio"),
    )),
]
