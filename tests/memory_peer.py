"""A game in its own process that reads netplay through one path only, for the memory test.

    python tests/memory_peer.py --lobby URL (--host GAME | --join CODE) --mode MODE \\
        --peers N --warmup S --seconds S

It sends a ~300-byte state at 60 Hz and 5 small reliable events a second, and reads ONE way:

- ``interpolated``: an asyncio game that only calls ``mesh.interpolated()`` each frame;
- ``sync-interpolated``: a ``SyncMesh`` frame loop that only calls ``interpolated()``;
- ``sync-poll``: a ``SyncMesh`` frame loop that only calls ``poll()``;
- ``events``: an asyncio game that only iterates ``mesh.events()``.

Reports JSON lines on stdout: ``ready`` (code), ``connected``, then ``rss`` (kib at the end of
the warm-up and at the end, the growth, and how many events/states it saw).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from typing import Any

import netplay

FPS = 60
EVENTS_PER_S = 5


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def rss_kib() -> int:
    gc.collect()
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def state(frame: int) -> dict[str, Any]:
    return {"x": frame % 640, "y": (frame * 3) % 480, "hp": 3, "name": "p" * 20,
            "trail": [[frame - i, i * 2] for i in range(20)]}


async def async_game(args: argparse.Namespace, config: netplay.MeshConfig) -> None:
    async with netplay.Mesh(config) as mesh:
        info = await (mesh.host(game=args.host, max_players=8) if args.host
                      else mesh.join(args.join))
        say(event="ready", code=info.code)
        await mesh.wait_for_peers(args.peers, timeout=120)
        say(event="connected")
        seen = 0

        async def read_events() -> None:
            nonlocal seen
            async for _ in mesh.events():
                seen += 1

        reader = asyncio.create_task(read_events()) if args.mode == "events" else None
        start = time.monotonic()
        warm: int | None = None
        frame = 0
        while (elapsed := time.monotonic() - start) < args.seconds:
            frame += 1
            mesh.send_state(state(frame))
            if frame % (FPS // EVENTS_PER_S) == 0:
                mesh.send_event({"kind": "ping", "frame": frame})
            if args.mode == "interpolated":
                seen += len(mesh.interpolated())
            if warm is None and elapsed >= args.warmup:
                warm = rss_kib()
            await asyncio.sleep(1 / FPS)
        end = rss_kib()
        if reader is not None:
            reader.cancel()
        say(event="rss", mode=args.mode, warm_kib=warm, end_kib=end,
            growth_kib=end - (warm or end), seen=seen, frames=frame)


def sync_game(args: argparse.Namespace, config: netplay.MeshConfig) -> None:
    with netplay.SyncMesh(config) as net:
        pending = (net.host(game=args.host, max_players=8) if args.host
                   else net.join(args.join))
        say(event="ready", code=pending.result(timeout=30).code)
        net.wait_for_peers(args.peers, timeout=120).result(timeout=130)
        say(event="connected")
        start = time.monotonic()
        warm: int | None = None
        frame = 0
        seen = 0
        while (elapsed := time.monotonic() - start) < args.seconds:
            frame += 1
            net.send_state(state(frame))
            if frame % (FPS // EVENTS_PER_S) == 0:
                net.send_event({"kind": "ping", "frame": frame})
            if args.mode == "sync-poll":
                seen += len(net.poll())
            else:
                seen += len(net.interpolated())
            if warm is None and elapsed >= args.warmup:
                warm = rss_kib()
            time.sleep(1 / FPS)  # clock.tick(60)
        end = rss_kib()
        say(event="rss", mode=args.mode, warm_kib=warm, end_kib=end,
            growth_kib=end - (warm or end), seen=seen, frames=frame)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lobby", required=True)
    parser.add_argument("--host")
    parser.add_argument("--join")
    parser.add_argument("--mode", required=True,
                        choices=["interpolated", "sync-interpolated", "sync-poll", "events"])
    parser.add_argument("--peers", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    config = netplay.MeshConfig(lobby_url=args.lobby, name=f"mem-{args.mode}")
    if args.mode.startswith("sync"):
        sync_game(args, config)
    else:
        asyncio.run(async_game(args, config))


if __name__ == "__main__":
    main()
