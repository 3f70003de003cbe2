"""Squares, the netplay demo: a small top-down arena for 2-8 players, peer to peer.

What does it show you about netplay?
- hosting (public or private), joining by code, quick match and browsing lobbies;
- each player's state sent unreliably (newest wins) and drawn through netplay's interpolation;
- game events (shots, tags, gems) sent reliably, and the host owning the gems (host migration:
  when the host leaves, the next one takes over);
- a net graph per peer (F3) and link conditioner presets (F4) to watch interpolation cope.

Controls: arrows / WASD move, space tags (shoots in the direction you last moved), F3 net graph,
F4 network preset (off, good, mobile, awful), Esc leaves.

``netplay-demo`` with no ``--lobby`` starts a lobby inside this process; ``--bots N`` adds N computer
players as separate processes that join it as real peers. ``--headless`` plays as a bot without a
window; with ``--json`` it prints a JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from .app import BotProcesses, lobby_request, run_headless, run_window  # noqa: E402
from .bots import Bot  # noqa: E402
from .embedded import EmbeddedLobby  # noqa: E402
from .game import lerp_snapshot  # noqa: E402
from .net import PRESETS, NetError, NetSession  # noqa: E402

__all__ = ["main", "parse_args"]

logger = logging.getLogger(__name__)

SHOT_AFTER = 6.0
"""Seconds of play before ``--screenshot`` may take its picture."""


def _probability(text: str) -> float:
    """``0.05`` or ``5%``."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"loss must be 0..1 or a percentage, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="netplay-demo", description=__doc__.split("\n\n")[0],
        epilog="Without --host/--join/--quick the lobby screen opens.")
    parser.add_argument("--lobby", metavar="URL",
                        help="lobby WebSocket URL (default: start one in this process)")
    parser.add_argument("--name", default=os.environ.get("USER", "player")[:16] or "player",
                        help="your display name")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--host", action="store_true", help="host a lobby at once")
    role.add_argument("--join", metavar="CODE", help="join the lobby with this code")
    role.add_argument("--quick", action="store_true", help="quick match")
    parser.add_argument("--private", action="store_true",
                        help="with --host: a private lobby (join by code only)")
    parser.add_argument("--max-players", type=int, default=8, choices=range(2, 9),
                        metavar="N", help="lobby size when hosting (2-8, default 8)")
    parser.add_argument("--bots", type=int, default=0, metavar="N",
                        help="add N computer players (separate processes) to your lobby")
    parser.add_argument("--lag", type=float, default=0.0, metavar="MS",
                        help="add MS of one-way delay to all your links, both directions")
    parser.add_argument("--loss", type=_probability, default=0.0, metavar="P",
                        help="drop this share of packets on all your links (0.05 or 5%%)")
    parser.add_argument("--preset", choices=PRESETS, default="off",
                        help="start with this link conditioner preset (F4 cycles them)")
    parser.add_argument("--headless", action="store_true",
                        help="no window: play as a bot (SDL dummy video driver)")
    parser.add_argument("--seconds", type=float, default=None, metavar="S",
                        help="play for S seconds, then leave")
    parser.add_argument("--json", action="store_true",
                        help="headless: print a JSON summary as the last line")
    parser.add_argument("--screenshot", metavar="PATH",
                        help="host a match (with --bots), let a bot play for you and save the "
                             "last frame as a PNG (use with --seconds)")
    parser.add_argument("--net-graph", action="store_true", help="start with the net graph on")
    parser.add_argument("--autostart", action="store_true",
                        help="host: start the match once all --bots have joined")
    parser.add_argument("--start-at", type=int, default=1, metavar="N",
                        help="headless host: wait for N players before starting")
    parser.add_argument("--ice-host", action="append", metavar="ADDR",
                        help="gather ICE candidates only on this address or interface "
                             "(repeatable; default: 127.0.0.1 for a local lobby, else all)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (bots, spawns)")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    args = parser.parse_args(argv)
    if args.bots < 0 or args.bots > 7:
        parser.error("--bots must be 0-7")
    if args.json and not args.headless:
        parser.error("--json needs --headless")
    if args.screenshot and not (args.join or args.quick):
        args.host = True
    if args.screenshot and args.seconds is None:
        args.seconds = 60.0
    return args


def _ice_hosts(args: argparse.Namespace, lobby_url: str) -> tuple[str, ...] | None:
    if args.ice_host:
        return tuple(args.ice_host)
    if urlparse(lobby_url).hostname in ("127.0.0.1", "localhost", "::1"):
        return ("127.0.0.1",)
    return None


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _window(args: argparse.Namespace, net: NetSession, lobby_url: str) -> None:
    from . import lobby_screen
    from .screens import Context, PlayScreen

    bots = BotProcesses(args.bots, lobby_url, ("--seconds", str(args.seconds + 5))
                        if args.seconds else ())

    def make_context(fonts: Any) -> Context:
        return Context(
            net=net, fonts=fonts, max_players=args.max_players,
            autostart_players=1 + args.bots if (args.autostart or args.screenshot) else None,
            on_lobby=bots.launch if args.bots else (lambda code: None),
            show_net_graph=args.net_graph, seed=args.seed,
            autopilot=Bot() if args.screenshot else None,
        )

    def first_screen(ctx: Context) -> Any:
        if args.host or args.join or args.quick:
            return lobby_screen.Pending(ctx, *lobby_request(net, args))
        return lobby_screen.MainMenu(ctx)

    def shot_ready(screen: Any) -> bool:
        # A lively frame: every bot in the arena, a few seconds in, some points scored.
        if not isinstance(screen, PlayScreen):
            return False
        world = screen.match.world
        return (len(world.players) >= 1 + args.bots and world.time >= SHOT_AFTER
                and all(p.alive for p in world.players.values())
                and len(world.pickups) >= 2 and bool(world.bullets)
                and sum(p.score for p in world.players.values()) >= args.bots)

    try:
        saved = run_window(make_context, first_screen, args.seconds, args.screenshot, shot_ready,
                           headless=bool(args.screenshot) and "DISPLAY" not in os.environ)
    finally:
        bots.stop()
    if args.screenshot and not saved:
        raise TimeoutError(f"no screenshot taken within --seconds {args.seconds}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    args = parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.headless:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    embedded = None
    if args.lobby is None:
        embedded = EmbeddedLobby().start()
        lobby_url = embedded.url
        print(f"lobby running at {lobby_url}", file=sys.stderr)
    else:
        lobby_url = args.lobby
    net = NetSession(lobby_url, args.name, conditioner=args.preset, lag_ms=args.lag,
                     loss=args.loss, ice_host_addresses=_ice_hosts(args, lobby_url),
                     interpolate=lerp_snapshot)
    try:
        net.open()
        if args.headless:
            summary = run_headless(net, args, _emit if args.json else lambda obj: None)
            if args.json:
                _emit(summary)
        else:
            _window(args, net, lobby_url)
    except (TimeoutError, NetError) as exc:
        print(f"netplay-demo: {exc}", file=sys.stderr)
        return 1
    finally:
        net.close()
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
