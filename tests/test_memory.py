"""Memory stays flat whatever a game reads (issue "Data plane as composed objects").

Four games, each its own process, play for 120 s at 60 Hz (a ~300-byte state every frame and
5 reliable events a second to everyone). Each reads netplay through one path only: the async
facade reading only ``interpolated()``, a ``SyncMesh`` reading only ``interpolated()``, a
``SyncMesh`` reading only ``poll()``, and the async facade reading only ``events()``. Before
queues were bounded, such games grew about 6 MiB a minute in a straight line (every state and
message queued twice, for paths nobody read). Each must now grow less than 5 MiB between the
end of a 20 s warm-up and the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("memory_peer.py")
MODES = ["interpolated", "sync-interpolated", "sync-poll", "events"]
SECONDS = 120.0
GROWTH_LIMIT_KIB = 5 * 1024


class Game:
    """tests/memory_peer.py in a subprocess; its JSON lines read by a thread."""

    def __init__(self, lobby_url: str, mode: str, role: list[str]) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--lobby", lobby_url, "--mode", mode, *role,
             "--peers", str(len(MODES) - 1), "--seconds", str(SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(json.loads(line))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        with self.changed:
            ok = self.changed.wait_for(
                lambda: any(x["event"] == event for x in self.lines) or self.proc.poll()
                is not None and not self.reader.is_alive(), timeout)
            found = [x for x in self.lines if x["event"] == event]
        if not ok or not found:
            raise AssertionError(f"{self.mode}: no {event!r} within {timeout} s "
                                 f"(exit {self.proc.poll()}): {self.lines}")
        return found[0]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        errors = self.proc.stderr.read() if self.proc.stderr else ""
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return errors


@pytest.mark.timeout(SECONDS + 180)
def test_memory_is_flat_whatever_the_game_reads(lobby: Any) -> None:
    games = [Game(lobby.url, MODES[0], ["--host", "memory"])]
    try:
        code = games[0].wait("ready", 60)["code"]
        games += [Game(lobby.url, mode, ["--join", code]) for mode in MODES[1:]]
        for game in games:
            game.wait("connected", 90)
        results = {game.mode: game.wait("rss", SECONDS + 60) for game in games}
    finally:
        errors = {game.mode: game.stop() for game in games}
    for mode, result in results.items():
        print(mode, result)  # the figures, in the test's output
        assert result["frames"] > SECONDS * 60 * 0.3, (mode, result)  # it really played
        assert result["seen"] > 0, (mode, result)  # and read something
        assert result["growth_kib"] < GROWTH_LIMIT_KIB, (mode, result, errors[mode][-2000:])
