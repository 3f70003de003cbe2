"""Every mistake on the ``netplay-demo`` command line ends with one line and exit status 2.

The installed console script runs as a subprocess (as a newcomer types it); each case checks the
exact message, the exit status and that no traceback was printed. The lobby cases run against a
real lobby server (wrong path, unknown code) or a port that refuses connections.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(sysconfig.get_path("scripts")) / "netplay-demo"
TIMEOUT = 120


def demo(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``netplay-demo`` (headless: no window) and capture its output."""
    assert SCRIPT.is_file(), f"{SCRIPT} is not installed"
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy",
               PYGAME_HIDE_SUPPORT_PROMPT="1")
    return subprocess.run([str(SCRIPT), *argv], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env, timeout=TIMEOUT)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == f"netplay-demo: error: {message}\n", proc.stderr
    assert proc.returncode == 2
    assert proc.stdout == ""


BAD_FLAGS = [
    (["--lag", "-5"],
     "argument --lag: expected a delay in milliseconds from 0 to 10000, got '-5'"),
    (["--lag", "abc"],
     "argument --lag: expected a delay in milliseconds from 0 to 10000, got 'abc'"),
    (["--lag", "inf"],
     "argument --lag: expected a delay in milliseconds from 0 to 10000, got 'inf'"),
    (["--loss", "abc"],
     "argument --loss: expected a probability 0..1 or a percentage like 5%, got 'abc'"),
    (["--loss", "150%"],
     "argument --loss: expected a probability 0..1 or a percentage like 5%, got '150%'"),
    (["--loss", "-0.1"],
     "argument --loss: expected a probability 0..1 or a percentage like 5%, got '-0.1'"),
    (["--lobby", "http://127.0.0.1:8765/ws"],
     "argument --lobby: expected a ws:// or wss:// URL like ws://HOST:PORT/ws, "
     "got 'http://127.0.0.1:8765/ws'"),
    (["--lobby", "127.0.0.1:8765"],
     "argument --lobby: expected a ws:// or wss:// URL like ws://HOST:PORT/ws, "
     "got '127.0.0.1:8765'"),
    (["--lobby", "ws://127.0.0.1:99999/ws"],
     "argument --lobby: expected a ws:// or wss:// URL like ws://HOST:PORT/ws, "
     "got 'ws://127.0.0.1:99999/ws' (the port must be 0-65535)"),
    (["--seconds", "-1"], "argument --seconds: expected a number of seconds above 0, got '-1'"),
    (["--seconds", "0"], "argument --seconds: expected a number of seconds above 0, got '0'"),
    (["--seconds", "nan"],
     "argument --seconds: expected a number of seconds above 0, got 'nan'"),
    (["--bots", "-1"], "argument --bots: expected a whole number from 0 to 7, got '-1'"),
    (["--bots", "9"], "argument --bots: expected a whole number from 0 to 7, got '9'"),
    (["--bots", "two"], "argument --bots: expected a whole number from 0 to 7, got 'two'"),
    (["--bots", "5", "--max-players", "4"],
     "--bots 5 needs --max-players 6 or more (you and the bots)"),
    (["--max-players", "12"],
     "argument --max-players: expected a whole number from 2 to 8, got '12'"),
    (["--max-players", "1"],
     "argument --max-players: expected a whole number from 2 to 8, got '1'"),
    (["--start-at", "0"], "argument --start-at: expected a whole number from 1 to 8, got '0'"),
    (["--start-at", "5", "--max-players", "4"], "--start-at 5 is more than --max-players 4"),
    (["--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
    (["--name", ""], "argument --name: expected 1 to 16 characters, got 0 in ''"),
    (["--name", "a" * 17],
     f"argument --name: expected 1 to 16 characters, got 17 in '{'a' * 17}'"),
    (["--join", "!!"],
     "argument --join: expected a lobby code of letters and digits like QX7K, got '!!'"),
    (["--preset", "terrible"],
     "argument --preset: expected one of off, good, mobile, awful, got 'terrible'"),
    (["--private", "--quick"],
     "--private applies to a lobby you host: use it with --host, not --join or --quick"),
    (["--host", "--quick"], "argument --quick: not allowed with argument --host"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_with_exit_status_2(argv: list[str], message: str) -> None:
    assert_one_line_error(demo("--headless", *argv), message)


def test_json_and_screenshot_need_the_right_mode() -> None:
    assert_one_line_error(demo("--json"), "--json needs --headless")
    assert_one_line_error(demo("--headless", "--screenshot", "x.png"),
                          "--screenshot draws the window: leave out --headless")


def test_a_screenshot_needs_a_png_in_an_existing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    assert_one_line_error(demo("--screenshot", str(missing / "shot.png")),
                          f"argument --screenshot: the directory {missing} does not exist")
    assert_one_line_error(demo("--screenshot", str(tmp_path / "shot.jpg")),
                          f"argument --screenshot: expected a file name ending in .png, got "
                          f"'{tmp_path / 'shot.jpg'}'")


def test_an_unknown_ice_host_is_named_by_the_flag() -> None:
    proc = demo("--headless", "--lobby", "ws://127.0.0.1:9/ws", "--ice-host", "bogus")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2
    # netplay names the interfaces of this machine after this prefix.
    prefix = ("netplay-demo: error: argument --ice-host: ice host address 'bogus' is neither "
              "an IP address nor a network interface")
    assert proc.stderr.startswith(prefix) and proc.stderr.count("\n") == 1, proc.stderr


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port with a bound socket that does not listen: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_a_lobby_that_refuses_the_connection(refusing_port: int) -> None:
    url = f"ws://127.0.0.1:{refusing_port}/ws"
    assert_one_line_error(
        demo("--headless", "--lobby", url, "--seconds", "1"),
        f"cannot reach the lobby at {url}: connection refused (is a netplay-lobby running at "
        "that address and port?)")


def test_a_lobby_url_with_the_wrong_path(lobby: Any) -> None:
    url = lobby.url.rsplit("/", 1)[0] + "/lobby"
    assert url != lobby.url
    assert_one_line_error(
        demo("--headless", "--lobby", url, "--seconds", "1"),
        f"cannot reach the lobby at {url}: the server answered HTTP 403 (is the path /ws?)")


def test_joining_an_unknown_code(lobby: Any) -> None:
    assert_one_line_error(
        demo("--headless", "--lobby", lobby.url, "--join", "zz99", "--seconds", "1"),
        "no open lobby has the code 'ZZ99' (lobby_not_found)")
