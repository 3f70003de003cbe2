"""The one-command demo end to end: the installed ``netplay-demo`` console script, its embedded
lobby, ``--bots`` processes, the window (SDL dummy driver), and the screenshot of a running
match."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_one_command_hosts_an_embedded_lobby_with_bots_and_saves_a_screenshot(
        tmp_path: Path) -> None:
    shot = tmp_path / "match.png"
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy",
               PYGAME_HIDE_SUPPORT_PROMPT="1")
    env.pop("DISPLAY", None)
    # The console script pip installed next to this Python (the README's command).
    script = Path(sysconfig.get_path("scripts")) / "netplay-demo"
    assert script.is_file(), f"{script} is not installed"
    proc = subprocess.run(
        [str(script), "--name", "alice", "--bots", "2",
         "--screenshot", str(shot), "--seconds", "60", "--net-graph", "--seed", "7"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lobby running at ws://127.0.0.1:" in proc.stderr

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    from netplay_demo import render
    from netplay_demo.game import PALETTE

    image = pygame.image.load(str(shot))
    assert image.get_size() == render.SCREEN_SIZE
    pixels = {tuple(image.get_at((x, y)))[:3]
              for x in range(0, image.get_width(), 2) for y in range(0, image.get_height(), 2)}
    assert len(pixels) > 50
    # Three players (alice and two bot processes) on the scoreboard, in their lobby colours.
    sidebar = {tuple(image.get_at((x, y)))[:3]
               for x in range(render.SIDEBAR_X, render.SIDEBAR_X + 16)
               for y in range(image.get_height())}
    assert sum(1 for colour in PALETTE if colour in sidebar) >= 3
