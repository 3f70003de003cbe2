"""A netplay player with DEFAULT ICE settings, for the NAT tests (run inside a namespace).

    nsenter --net=... python tests/nat_peer.py --lobby ws://203.0.113.1:8000/ws --name alice

Unlike ``peer_process.py`` it pins nothing: host candidates come from every interface of its
namespace, STUN/TURN servers (and TURN credentials) from the lobby. It reads one JSON command
per line on stdin and reports one JSON object per line on stdout (``t``: seconds since start):

- ``{"op": "host"}`` -> ``{"event": "lobby", "code"}``; ``{"op": "join", "code"}`` -> the same;
- ``{"op": "wait", "peers": n, "timeout": s}`` -> ``connected`` (``peers``, ``pairs``,
  ``seconds`` since host/join) or ``wait_failed`` (``error``: type and message);
- ``{"op": "pairs"}`` -> ``pairs``: peer -> ``{"kind", "local", "remote", ...}`` or ``None``;
- ``{"op": "events", "count": n, "rate": hz}`` -> sends ``{"seq": i}`` reliably to every
  peer, ``count`` of them at ``rate`` per second, then ``sent``;
- ``{"op": "leave"}`` -> ``left_lobby``; ``{"op": "quit"}`` (or EOF) exits.

Unprompted: ``joined`` (peer, pair), ``left`` (peer, reason, detail), ``message`` (peer, body).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

import netplay

START = time.monotonic()


def say(**fields: Any) -> None:
    print(json.dumps({**fields, "t": round(time.monotonic() - START, 3)}), flush=True)


def pair_of(mesh: netplay.Mesh, peer: str) -> dict[str, Any] | None:
    try:
        pair = mesh.stats(peer).candidate_pair
    except KeyError:
        return None
    if pair is None:
        return None
    return {"kind": pair.kind, "relayed": pair.relayed, "local_type": pair.local_type,
            "local": list(pair.local_address), "remote_type": pair.remote_type,
            "remote": list(pair.remote_address)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lobby", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", help="file for netplay's DEBUG log")
    args = parser.parse_args()
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.DEBUG,
                            format="%(relativeCreated)7.0f %(name)s %(message)s")
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(commands.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(commands.put_nowait, None)

    loop.run_in_executor(None, read_stdin)
    config = netplay.MeshConfig(lobby_url=args.lobby, name=args.name)
    async with netplay.Mesh(config) as mesh:
        say(event="ready", peer_id=mesh.peer_id)
        entered = time.monotonic()

        async def report() -> None:
            async for ev in mesh.events():
                if isinstance(ev, netplay.PeerJoined):
                    say(event="joined", peer=ev.peer_id, pair=pair_of(mesh, ev.peer_id))
                elif isinstance(ev, netplay.PeerLeft):
                    say(event="left", peer=ev.peer_id, reason=ev.reason, detail=ev.detail)
                elif isinstance(ev, netplay.MessageReceived):
                    say(event="message", peer=ev.peer_id, body=ev.body)

        async def send_events(count: int, rate: float) -> None:
            for i in range(count):
                mesh.send_event({"seq": i, "from": args.name})
                await asyncio.sleep(1 / rate)
            say(event="sent", count=count)

        background = [asyncio.create_task(report())]
        while (command := await commands.get()) is not None:
            op = command["op"]
            if op == "quit":
                break
            if op in ("host", "join"):
                entered = time.monotonic()
                info = await (mesh.host(game="nat") if op == "host"
                              else mesh.join(command["code"]))
                say(event="lobby", code=info.code)
            elif op == "wait":
                try:
                    peers = await mesh.wait_for_peers(command["peers"],
                                                      timeout=command.get("timeout", 30))
                except Exception as exc:
                    say(event="wait_failed", error=f"{type(exc).__name__}: {exc}")
                else:
                    say(event="connected", peers=sorted(peers),
                        seconds=round(time.monotonic() - entered, 3),
                        pairs={p: pair_of(mesh, p) for p in peers})
            elif op == "pairs":
                say(event="pairs", pairs={p: pair_of(mesh, p) for p in mesh.peers})
            elif op == "events":
                background.append(asyncio.create_task(
                    send_events(command["count"], command.get("rate", 50.0))))
            elif op == "leave":
                await mesh.leave()
                say(event="left_lobby")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    say(event="closed")


if __name__ == "__main__":
    asyncio.run(main())
