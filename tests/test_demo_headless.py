"""The demo as real separate processes through a real lobby, headless, judged by their JSON.

A host and two joiners play for a few seconds; each must see the other two and receive snapshots
and reliable events from each. Then the host process is killed (SIGKILL): the two others must
report the host change, show the drop and the new host as messages, keep exchanging snapshots
and events, and get gems from the new host. Also: --lag/--loss and --preset condition a
player's links, quick match pairs two players, --seconds ends a player by itself.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netplay_demo.match import leave_text

pytestmark = pytest.mark.slow

DEADLINE = 60.0


class Demo:
    """One ``python -m netplay_demo --headless --json`` process and the JSON lines it printed."""

    def __init__(self, lobby_url: str, name: str, *args: str) -> None:
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", PYGAME_HIDE_SUPPORT_PROMPT="1")
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netplay_demo", "--headless", "--json", "--lobby", lobby_url,
             "--name", name, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        self.lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.last_status: dict[str, Any] = {}
        self.stderr: list[str] = []
        self.readers = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._read_err, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def next_line(self, deadline: float) -> dict[str, Any]:
        """The next JSON line (fails the test at the deadline, with the process's stderr)."""
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"{self.name}: no JSON line in time; rc={self.proc.poll()} "
                        f"last status: {self.last_status}\nstderr:\n"
                        + "".join(self.stderr[-40:]))

    def wait_status(self, check: Callable[[dict[str, Any]], bool], deadline: float) -> dict:
        """Read status lines until one satisfies ``check``; return it."""
        while not (self.last_status and check(self.last_status)):
            line = self.next_line(deadline)
            if "status" in line:
                self.last_status = line["status"]
        return self.last_status

    def finish(self, timeout: float = 20) -> dict[str, Any]:
        """SIGTERM (a clean leave) and return the final summary, the last JSON line."""
        self.proc.send_signal(signal.SIGTERM)
        return self.summary(timeout)

    def summary(self, timeout: float) -> dict[str, Any]:
        """Wait for the process to end on its own; return its summary, the last JSON line."""
        self.proc.wait(timeout=timeout)
        last: dict[str, Any] | None = None
        while True:
            try:
                line = self.lines.get(timeout=2)
            except queue.Empty:
                break
            if "peers_seen" in line:  # the summary (status lines nest theirs)
                last = line
        assert last is not None, f"{self.name}: no final summary; stderr:\n" + "".join(
            self.stderr[-40:])
        assert self.proc.returncode == 0, "".join(self.stderr[-40:])
        return last

    def kill(self) -> None:
        """SIGKILL (no goodbye to anyone), then release the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Make sure the process is gone (a clean leave if it still runs); close its pipes."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        for reader in self.readers:
            reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def any_status(demos: tuple[Demo, ...], check: Callable[[dict[str, Any]], bool],
               deadline: float) -> Demo:
    """Read the status lines of all ``demos`` until one satisfies ``check``; return that one."""
    while True:
        for demo in demos:
            if demo.last_status and check(demo.last_status):
                return demo
        for demo in demos:
            try:
                line = demo.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if "status" in line:
                demo.last_status = line["status"]
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for a status")


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.close()


def hears_from(peers: list[str]) -> Callable[[dict[str, Any]], bool]:
    """Status check: snapshots and events received from every one of ``peers``."""
    def check(status: dict[str, Any]) -> bool:
        return all(status["snapshots_received"].get(p, 0) > 0
                   and status["events_received"].get(p, 0) > 0 for p in peers)
    return check


def test_three_processes_play_and_survive_the_host_being_killed(lobby: Any,
                                                                 demos: list[Demo]) -> None:
    deadline = time.monotonic() + DEADLINE
    host = Demo(lobby.url, "host", "--host", "--start-at", "3", "--seed", "1")
    demos.append(host)
    hello = host.next_line(deadline)
    code, host_id = hello["lobby"], hello["peer_id"]
    assert hello["host"] == host_id
    joiners = [Demo(lobby.url, f"joiner{k}", "--join", code, "--seed", str(k + 1))
               for k in (1, 2)]
    demos.extend(joiners)
    ids = {host.name: host_id}
    for joiner in joiners:
        line = joiner.next_line(deadline)
        assert line["lobby"] == code and line["host"] == host_id
        ids[joiner.name] = line["peer_id"]
    assert len(set(ids.values())) == 3

    # Everyone sees the other two and hears snapshots and events from each: their hello in the
    # chat and their shots; the host spawns the gems, and only the host.
    def hears_and_has_gems(others: list[str]) -> Callable[[dict[str, Any]], bool]:
        def check(status: dict[str, Any]) -> bool:
            kinds = status["events_by_kind"]
            return (hears_from(others)(status) and status["gems_spawned"].get(host_id, 0) > 0
                    and all({"chat", "shot"} <= set(kinds.get(p, {})) for p in others))
        return check

    for demo in (host, *joiners):
        others = [pid for name, pid in ids.items() if name != demo.name]
        status = demo.wait_status(hears_and_has_gems(others), deadline)
        assert sorted(status["peers_seen"]) == sorted(others)
        assert status["peer_id"] == ids[demo.name]
        assert status["host"] == host_id
        assert list(status["gems_spawned"]) == [host_id]

    # Sooner or later a bolt tags a square of another process: the victim's "hit" event.
    def tagged_over_the_network(status: dict[str, Any]) -> bool:
        return any("hit" in kinds for kinds in status["events_by_kind"].values())
    any_status((host, *joiners), tagged_over_the_network, deadline)

    host.kill()

    # The two others report the host change and keep playing with each other, and the gems go
    # on: the new host spawns them and the other accepts its announcements (a count under the
    # new host's id, which was zero before the kill).
    a, b = joiners
    new_hosts = []
    dropped = {leave_text("host", why) for why in ("timed_out", "connection_failed",
                                                   "disconnected")}
    for me, other in ((a, b), (b, a)):
        def after_migration(status: dict[str, Any], other_id: str = ids[other.name]) -> bool:
            since = status["since_last_host_change"]
            return (bool(status["host_changes"]) and status["host"] != host_id
                    and since["snapshots_received"].get(other_id, 0) > 0
                    and since["events_received"].get(other_id, 0) > 0
                    and status["gems_spawned"].get(status["host"], 0) > 0
                    and any(n in dropped for n in status["notices"])
                    and any(n.endswith(" the host now") for n in status["notices"]))
        new_hosts.append(me.wait_status(after_migration, deadline)["host"])
    assert new_hosts[0] == new_hosts[1] in (ids[a.name], ids[b.name])
    # The drop and the host change were shown as messages, naming who took over.
    for me in joiners:
        notices = me.last_status["notices"]
        new_host_name = next(name for name, pid in ids.items() if pid == new_hosts[0])
        expected = ("you are" if new_host_name == me.name else f"{new_host_name} is")
        assert f"{expected} the host now" in notices, notices

    # Each ends cleanly with a summary; the first to leave may hand the host to the other, who
    # shows it as a plain leave (not a drop) before ending too.
    for demo in joiners:
        if demo is b:
            b.wait_status(lambda status: leave_text(a.name, "left") in status["notices"],
                          deadline)
        final = demo.finish()
        other_id = ids[b.name if demo is a else a.name]
        assert final["host_changes"][0] == new_hosts[0]
        assert sorted(final["peers_seen"]) == sorted(p for n, p in ids.items() if n != demo.name)
        assert final["snapshots_received"][other_id] > 0
        assert final["events_received"][other_id] > 0
        assert set(final["stats"]) == set(final["peers_seen"])
        link = final["stats"][other_id]
        assert set(link) == {"rtt_ms", "loss", "jitter_ms"}
        assert all(isinstance(link[key], (int, float)) for key in link), link
        assert final["name"] == demo.name and final["peer_id"] == ids[demo.name]


def test_lag_and_loss_flags_condition_all_of_a_players_links(lobby: Any,
                                                            demos: list[Demo]) -> None:
    deadline = time.monotonic() + DEADLINE
    laggy = Demo(lobby.url, "laggy", "--host", "--start-at", "2", "--lag", "40",
                 "--loss", "20%", "--seed", "5")
    demos.append(laggy)
    hello = laggy.next_line(deadline)
    plain = Demo(lobby.url, "plain", "--join", hello["lobby"], "--seed", "6")
    demos.append(plain)
    plain_id = plain.next_line(deadline)["peer_id"]
    laggy_id = hello["peer_id"]

    def measured(peer: str) -> Callable[[dict[str, Any]], bool]:
        def check(status: dict[str, Any]) -> bool:
            stats = status["stats"].get(peer, {})
            return stats.get("rtt_ms") is not None and status["snapshots_received"].get(
                peer, 0) >= 50
        return check

    # The delay is added both ways on the laggy player's links: both ends measure RTT >= 2 x 40
    # ms (checked with margin); the laggy player sees the loss on what it receives.
    laggy_view = laggy.wait_status(measured(plain_id), deadline)
    plain_view = plain.wait_status(measured(laggy_id), deadline)
    assert laggy_view["stats"][plain_id]["rtt_ms"] >= 60
    assert plain_view["stats"][laggy_id]["rtt_ms"] >= 60
    assert laggy_view["stats"][plain_id]["loss"] > 0
    final = laggy.finish()
    assert final["stats"][plain_id]["loss"] > 0


def test_quick_match_puts_two_players_in_one_lobby(lobby_factory: Any,
                                                   demos: list[Demo]) -> None:
    lobby = lobby_factory()  # its own lobby server: no leftover public lobby to match into
    deadline = time.monotonic() + DEADLINE
    first = Demo(lobby.url, "first", "--quick", "--seed", "7")
    demos.append(first)
    created = first.next_line(deadline)
    assert created["host"] == created["peer_id"]  # nobody to match with: it made a lobby
    second = Demo(lobby.url, "second", "--quick", "--seed", "8", "--preset", "mobile")
    demos.append(second)
    matched = second.next_line(deadline)
    assert matched["lobby"] == created["lobby"] and matched["host"] == created["peer_id"]
    second.wait_status(hears_from([created["peer_id"]]), deadline)

    # --preset mobile (60 ms each way) is on all of second's links from the start: first
    # measures an RTT of about 2 x 60 ms to it (checked with margin).
    def lagged(status: dict[str, Any], peer: str = matched["peer_id"]) -> bool:
        rtt = status["stats"].get(peer, {}).get("rtt_ms")
        return hears_from([peer])(status) and rtt is not None and rtt >= 80
    first.wait_status(lagged, deadline)


def test_seconds_ends_a_headless_player_by_itself_with_a_summary(lobby: Any,
                                                                 demos: list[Demo]) -> None:
    solo = Demo(lobby.url, "solo", "--host", "--private", "--seconds", "2", "--seed", "9")
    demos.append(solo)
    hello = solo.next_line(time.monotonic() + DEADLINE)
    final = solo.summary(timeout=DEADLINE)
    assert final["peer_id"] == hello["peer_id"] == final["host"]
    assert final["lobby"] == hello["lobby"] and final["name"] == "solo"
    assert final["peers_seen"] == [] and final["frames"] > 0
