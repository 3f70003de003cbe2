"""``netplay-demo --headless --bots N``: the installed command hosts at once, starts the bots as
separate processes in its embedded lobby, and its JSON shows it played with each of them.

Also: ``--headless`` alone quick-matches (and says so in its JSON) and warns on stderr, in one
line, when nobody joined; the JSON's numbers are rounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(sysconfig.get_path("scripts")) / "netplay-demo"
TIMEOUT = 120  # the run itself is 10 s of play; a busy 2-core machine starts bots slowly


def run_demo(*argv: str) -> tuple[list[dict[str, Any]], str]:
    """Run the installed ``netplay-demo --headless --json ...``; its JSON lines and stderr."""
    assert SCRIPT.is_file(), f"{SCRIPT} is not installed"
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy",
               PYGAME_HIDE_SUPPORT_PROMPT="1")
    proc = subprocess.run([str(SCRIPT), "--headless", "--json", *argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout
    return lines, proc.stderr


def floats(value: Any) -> list[float]:
    """Every float anywhere in a JSON value."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in floats(v)]
    return []


def test_headless_bots_host_at_once_and_play_with_the_host() -> None:
    lines, stderr = run_demo("--bots", "2", "--seconds", "10", "--name", "alice", "--seed", "3")
    hello, summary = lines[0], lines[-1]
    # It hosted at once (no --host needed) and says so.
    assert hello["role"] == "host" and hello["bots"] == 2
    assert hello["host"] == hello["peer_id"]
    assert summary["role"] == "host" and summary["bots"] == 2
    assert summary["lobby"] == hello["lobby"] and summary["host"] == summary["peer_id"]
    # Both bots were seen, by name, and each sent snapshots and reliable events.
    bots = {peer: name for peer, name in summary["names"].items()}
    assert sorted(bots.values()) == ["bot1", "bot2"], summary
    assert sorted(summary["peers_seen"]) == sorted(bots)
    for peer in bots:
        assert summary["snapshots_received"].get(peer, 0) > 0, summary
        assert summary["events_received"].get(peer, 0) > 0, summary
        assert summary["events_by_kind"][peer].get("chat", 0) >= 1, summary
        assert set(summary["stats"][peer]) == {"rtt_ms", "loss", "jitter_ms"}
    assert summary["seconds"] >= 9.5
    assert "warning" not in stderr, stderr
    # Numbers are rounded for people: times to 0.1 ms, shares to 4 decimals.
    for line in lines:
        for number in floats(line):
            assert len(repr(number).split(".")[1]) <= 4, (number, line)


def test_headless_alone_quick_matches_and_warns_that_nobody_joined() -> None:
    lines, stderr = run_demo("--seconds", "1", "--name", "solo")
    hello, summary = lines[0], lines[-1]
    assert hello["role"] == summary["role"] == "quick" and summary["bots"] == 0
    assert summary["peers_seen"] == [] and summary["frames"] > 0
    code = summary["lobby"]
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert warnings == [f"netplay-demo: warning: nobody else joined lobby {code} (start another "
                        f"player with --join {code}, or add --bots N)"], stderr
