"""Squares, the netplay demo: a small top-down arena for 2-8 players, peer to peer.

What does it show you about netplay?
- hosting (public or private), joining by code, quick match and browsing lobbies;
- each player's state sent unreliably (newest wins) and drawn through netplay's interpolation;
- game events (shots, tags, gems) sent reliably, and the host owning the gems (host migration:
  when the host leaves, the next one takes over);
- a net graph per peer (F3) and link conditioner presets (F4) to watch interpolation cope.

Controls: arrows / WASD move, space tags (shoots in the direction you last moved), F3 net graph,
F4 network preset (off, good, mobile, awful), Esc leaves.

``netplay-demo`` with no ``--lobby`` starts a lobby inside this process; ``--bots N`` adds N
computer players as separate processes that join it as real peers. ``--headless`` plays as a bot
without a window (hosting with ``--bots``, else quick matching); with ``--json`` it prints a JSON
summary as its last line. The flags and their checks are in :mod:`netplay_demo.cli`.
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

from . import cli  # noqa: E402
from .app import BotProcesses, lobby_request, run_headless, run_window  # noqa: E402
from .bots import Bot  # noqa: E402
from .embedded import EmbeddedLobby  # noqa: E402
from .game import lerp_snapshot  # noqa: E402
from .net import LobbyUnavailable, NetError, NetSession, unreachable_reason  # noqa: E402

__all__ = ["main", "parse_args"]

logger = logging.getLogger(__name__)

SHOT_AFTER = 6.0
"""Seconds of play before ``--screenshot`` may take its picture."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see :mod:`netplay_demo.cli`); mistakes exit with status 2."""
    return cli.parse_args(argv, __doc__.split("\n\n")[0])


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
        if args.role != "menu":
            return lobby_screen.Pending(ctx, *lobby_request(net, args))
        return lobby_screen.MainMenu(ctx)

    def shot_ready(screen: Any) -> bool:
        # A lively frame: every bot in the arena, a few seconds in, some points scored, you
        # playing (no "you were tagged" banner over the arena); one bot may be tagged (its
        # ghost shows).
        if not isinstance(screen, PlayScreen):
            return False
        world = screen.match.world
        tagged = sum(1 for p in world.players.values() if not p.alive)
        return (len(world.players) >= 1 + args.bots and world.time >= SHOT_AFTER
                and world.local is not None and world.local.alive and tagged <= 1
                and len(world.pickups) >= 1 and bool(world.bullets)
                and sum(p.score for p in world.players.values()) >= args.bots)

    try:
        saved = run_window(make_context, first_screen, args.seconds, args.screenshot, shot_ready,
                           headless=bool(args.screenshot) and "DISPLAY" not in os.environ)
    finally:
        bots.stop()
    if args.screenshot and not saved:
        raise TimeoutError(f"no screenshot taken within --seconds {args.seconds}")


def _warn_if_alone(summary: dict[str, Any]) -> None:
    if not summary["peers_seen"]:
        code = summary["lobby"]
        sys.stderr.write(f"netplay-demo: warning: nobody else joined lobby {code} (start another "
                         f"player with --join {code}, or add --bots N)\n")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code.

    Mistakes in the flags and lobby errors (unreachable, wrong path, unknown code) end it with
    one line on stderr and exit status 2; a timeout (no screenshot, no players) with status 1.
    """
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
    net: NetSession | None = None
    try:
        try:
            net = NetSession(lobby_url, args.name, conditioner=args.preset, lag_ms=args.lag,
                             loss=args.loss, ice_host_addresses=_ice_hosts(args, lobby_url),
                             interpolate=lerp_snapshot)
        except ValueError as exc:  # the one flag the parser leaves to netplay: --ice-host
            cli.fail(f"argument --ice-host: {exc}")
        try:
            net.open()
        except LobbyUnavailable as exc:
            cli.fail(f"cannot reach the lobby at {lobby_url}: {unreachable_reason(exc)}")
        if args.headless:
            summary = run_headless(net, args, lobby_url, _emit if args.json else lambda obj: None)
            if args.json:
                _emit(summary)
            _warn_if_alone(summary)
        else:
            _window(args, net, lobby_url)
    except NetError as exc:
        cli.fail(str(exc))
    except TimeoutError as exc:
        cli.fail(str(exc), status=1)
    finally:
        if net is not None:
            net.close()
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
