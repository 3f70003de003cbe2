"""A netplay peer in its own OS process, for multi-process mesh tests.

    python tests/peer_process.py --lobby ws://127.0.0.1:PORT/ws --name bob --join CODE --peers 2

It joins (or hosts, with ``--host GAME``) a lobby, sends its state at 30 Hz, greets every peer
that connects with a reliable event, and reports on stdout, one JSON object per line:
``ready`` (peer_id, code), ``joined``/``left`` (peer, reason), ``message`` (peer, body),
``state`` (peer: first state seen from that peer), ``connected`` (peers: when ``--peers`` are
connected), ``host_changed`` (host, is_me). Every other line on stdin is broadcast as a
reliable event; it exits cleanly when stdin closes or reads ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import netplay


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lobby", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host")
    parser.add_argument("--join")
    parser.add_argument("--peers", type=int, default=1)
    args = parser.parse_args()
    config = netplay.MeshConfig(lobby_url=args.lobby, name=args.name,
                                ice_host_addresses=("127.0.0.1",))
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def watch_stdin() -> None:  # a line is an event to broadcast; "quit" or EOF ends
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            loop.call_soon_threadsafe(mesh.send_event, line.strip())
        loop.call_soon_threadsafe(stdin_closed.set)

    async with netplay.Mesh(config) as mesh:
        if args.host:
            info = await mesh.host(game=args.host)
        else:
            info = await mesh.join(args.join)
        say(event="ready", peer_id=mesh.peer_id, code=info.code)
        loop.run_in_executor(None, watch_stdin)
        seen_state: set[str] = set()
        announced = False

        async def report() -> None:
            nonlocal announced
            async for ev in mesh.events():
                if isinstance(ev, netplay.PeerJoined):
                    say(event="joined", peer=ev.peer_id)
                    mesh.send_event({"hello": args.name}, to=ev.peer_id)
                elif isinstance(ev, netplay.HostChanged):
                    say(event="host_changed", host=ev.host, is_me=ev.is_me)
                elif isinstance(ev, netplay.PeerLeft):
                    say(event="left", peer=ev.peer_id, reason=ev.reason)
                elif isinstance(ev, netplay.MessageReceived):
                    say(event="message", peer=ev.peer_id, body=ev.body)
                if not announced and len(mesh.peers) >= args.peers:
                    announced = True
                    say(event="connected", peers=sorted(mesh.peers))

        async def play() -> None:
            tick = 0
            while True:
                tick += 1
                mesh.send_state({"name": args.name, "tick": tick})
                for peer in mesh.states():
                    if peer not in seen_state:
                        seen_state.add(peer)
                        say(event="state", peer=peer)
                await asyncio.sleep(1 / 30)

        tasks = [asyncio.create_task(report()), asyncio.create_task(play())]
        await stdin_closed.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    say(event="closed")


if __name__ == "__main__":
    asyncio.run(main())
