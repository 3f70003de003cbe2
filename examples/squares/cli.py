"""The demo's command line: the flags, their checks, and what ``--headless`` does by default.

Every mistake on the command line ends the demo with one line on stderr,
``netplay-demo: error: ...``, and exit status 2 (argparse's convention, without the usage
block: ``--help`` shows that). The value checks live in the small ``type=`` functions below, so
argparse names the flag in the message: ``argument --lag: expected ...``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlparse

from .net import PRESETS

__all__ = [
    "MAX_BOTS",
    "MAX_NAME",
    "DemoParser",
    "build_parser",
    "fail",
    "headless_role",
    "parse_args",
]

MAX_BOTS = 7
"""Bots besides you: a lobby holds at most 8 players."""
MAX_NAME = 16
"""Display names longer than this do not fit the scoreboard."""
MAX_LAG_MS = 10_000.0
PROG = "netplay-demo"

EPILOG = """\
Without --host/--join/--quick the window opens the lobby screen. --headless picks for you:
it hosts when you give --bots N or --private (the bots join your lobby), otherwise it quick
matches (joins the fullest open public lobby of the game, or hosts one). With --json it reports
the role it took. Errors in the flags print one line and exit with status 2."""


def fail(message: str, status: int = 2) -> NoReturn:
    """End the demo with ``netplay-demo: error: MESSAGE`` on stderr (one line)."""
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    raise SystemExit(status)


class DemoParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


# --- value checks (argparse turns ArgumentTypeError into "argument --flag: MESSAGE") ----------


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def probability(text: str) -> float:
    """``0.05`` or ``5%``: a share of packets."""
    value = _number(text[:-1]) if text.endswith("%") else _number(text)
    if value is not None and text.endswith("%"):
        value /= 100
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"expected a probability 0..1 or a percentage like 5%, got {text!r}")
    return value


def milliseconds(text: str) -> float:
    """A one-way delay in ms, 0 to 10 s."""
    value = _number(text)
    if value is None or not 0 <= value <= MAX_LAG_MS:
        raise argparse.ArgumentTypeError(
            f"expected a delay in milliseconds from 0 to {MAX_LAG_MS:g}, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    value = _number(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def whole(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An ``int`` type for argparse, within ``low..high`` (either may be open)."""
    def check(text: str) -> int:
        value: int | None
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (low is not None and value < low) or (
                high is not None and value > high):
            if low is not None and high is not None:
                wanted = f"a whole number from {low} to {high}"
            elif low is not None:
                wanted = f"a whole number of at least {low}"
            else:
                wanted = "a whole number"
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return check


def preset(text: str) -> str:
    """A link conditioner preset name."""
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(PRESETS)}, got {text!r}")
    return text


def lobby_url(text: str) -> str:
    """A lobby WebSocket URL: ``ws://HOST:PORT/ws`` or ``wss://...``."""
    parsed = urlparse(text)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise argparse.ArgumentTypeError(
            f"expected a ws:// or wss:// URL like ws://HOST:PORT/ws, got {text!r}")
    try:
        parsed.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a ws:// or wss:// URL like ws://HOST:PORT/ws, got {text!r} "
            "(the port must be 0-65535)") from None
    return text


def display_name(text: str) -> str:
    """1-16 visible characters."""
    name = text.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise argparse.ArgumentTypeError(
            f"expected 1 to {MAX_NAME} characters, got {len(name)} in {text!r}")
    return name


def png_path(text: str) -> str:
    """Where ``--screenshot`` writes: a ``.png`` file in a directory that exists."""
    folder = os.path.dirname(os.path.abspath(text))
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"expected a file name ending in .png, got {text!r}")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the directory {folder} does not exist")
    return text


def lobby_code(text: str) -> str:
    """A lobby code as the host's screen shows it (letters and digits)."""
    code = text.strip().upper()
    if not code or len(code) > 16 or not code.isalnum():
        raise argparse.ArgumentTypeError(
            f"expected a lobby code of letters and digits like QX7K, got {text!r}")
    return code


# --- the parser ------------------------------------------------------------------------------


def build_parser(description: str) -> DemoParser:
    """Every flag of ``netplay-demo`` (docs/demo.md lists them too)."""
    parser = DemoParser(prog=PROG, description=description, epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lobby", metavar="URL", type=lobby_url,
                        help="lobby WebSocket URL, ws://HOST:PORT/ws (default: start one in "
                             "this process)")
    default_name = (os.environ.get("USER", "") or "player")[:MAX_NAME].strip() or "player"
    parser.add_argument("--name", default=default_name, type=display_name,
                        help=f"your display name (1-{MAX_NAME} characters)")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--host", action="store_true", help="host a lobby at once")
    role.add_argument("--join", metavar="CODE", type=lobby_code,
                      help="join the lobby with this code")
    role.add_argument("--quick", action="store_true", help="quick match")
    parser.add_argument("--private", action="store_true",
                        help="host a private lobby (join by code only)")
    parser.add_argument("--max-players", type=whole(2, 8), default=8, metavar="N",
                        help="lobby size when hosting or quick matching (2-8, default 8)")
    parser.add_argument("--bots", type=whole(0, MAX_BOTS), default=0, metavar="N",
                        help=f"add N computer players (separate processes, 0-{MAX_BOTS}) to "
                             "your lobby")
    parser.add_argument("--lag", type=milliseconds, default=0.0, metavar="MS",
                        help="add MS (0-10000) of one-way delay to all your links, both "
                             "directions")
    parser.add_argument("--loss", type=probability, default=0.0, metavar="P",
                        help="drop this share of packets on all your links (0.05 or 5%%)")
    parser.add_argument("--preset", type=preset, default="off", metavar="NAME",
                        help=f"start with this link conditioner preset ({', '.join(PRESETS)}; "
                             "F4 cycles them)")
    parser.add_argument("--headless", action="store_true",
                        help="no window: play as a bot (SDL dummy video driver); hosts with "
                             "--bots/--private, else quick matches, unless --host/--join/"
                             "--quick says otherwise")
    parser.add_argument("--seconds", type=seconds, default=None, metavar="S",
                        help="play for S seconds (above 0), then leave")
    parser.add_argument("--json", action="store_true",
                        help="headless: print JSON lines, the summary last")
    parser.add_argument("--screenshot", metavar="PATH", type=png_path,
                        help="host a match (with --bots), let a bot play for you and save the "
                             "frame as a PNG (use with --seconds)")
    parser.add_argument("--net-graph", action="store_true", help="start with the net graph on")
    parser.add_argument("--autostart", action="store_true",
                        help="host: start the match once all --bots have joined")
    parser.add_argument("--start-at", type=whole(1, 8), default=None, metavar="N",
                        help="headless host: wait for N players (1-8) before starting "
                             "(default: you and your --bots)")
    parser.add_argument("--ice-host", action="append", metavar="ADDR",
                        help="gather ICE candidates only on this address or interface "
                             "(repeatable; default: 127.0.0.1 for a local lobby, else all)")
    parser.add_argument("--seed", type=whole(), default=None, metavar="N",
                        help="random seed (bots, spawns)")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    return parser


def headless_role(args: argparse.Namespace) -> str:
    """What a headless run does: ``"host"``, ``"join"`` or ``"quick"``.

    ``--host``/``--join``/``--quick`` decide; without them a run with ``--bots`` or
    ``--private`` hosts (the bots need a lobby to join), and any other quick matches.
    """
    if args.join:
        return "join"
    if args.host:
        return "host"
    if args.quick:
        return "quick"
    return "host" if (args.bots or args.private) else "quick"


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """Parse and cross-check the command line (one-line errors, exit status 2)."""
    parser = build_parser(description)
    args = parser.parse_args(argv)
    if args.json and not args.headless:
        parser.error("--json needs --headless")
    if args.screenshot and args.headless:
        parser.error("--screenshot draws the window: leave out --headless")
    if args.private and (args.join or args.quick):
        parser.error("--private applies to a lobby you host: use it with --host, not "
                     "--join or --quick")
    if args.bots + 1 > args.max_players:
        parser.error(f"--bots {args.bots} needs --max-players {args.bots + 1} or more "
                     "(you and the bots)")
    if args.start_at is not None and args.start_at > args.max_players:
        parser.error(f"--start-at {args.start_at} is more than --max-players "
                     f"{args.max_players}")
    if args.screenshot and not (args.join or args.quick):
        args.host = True
    if args.screenshot and args.seconds is None:
        args.seconds = 60.0
    if args.headless:
        args.role = headless_role(args)
        if args.start_at is None:
            args.start_at = 1 + args.bots
    else:
        args.role = "join" if args.join else "quick" if args.quick else (
            "host" if args.host else "menu")
        if args.start_at is None:
            args.start_at = 1
    return args
