"""Running the demo: the windowed loop, the headless bot loop, and the ``--bots`` processes.

The window loop follows pygame's ``aliens.py`` order (events, update, draw, flip, tick) and lets
the current screen do the work. The headless loop plays one match as a bot at a fixed frame rate
and returns the summary that ``--json`` prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from .bots import Bot
from .match import Match
from .net import NetSession

__all__ = ["BotProcesses", "lobby_request", "run_headless", "run_window"]

logger = logging.getLogger(__name__)

HEADLESS_FPS = 30
WINDOW_FPS = 60
REQUEST_TIMEOUT = 30.0
BOTS_TIMEOUT = 60.0
"""Seconds a headless host waits for its ``--bots`` to join before it starts without them."""
STATUS_EVERY = 1.0


class BotProcesses:
    """``--bots N``: N separate ``python -m netplay_demo --headless`` players in our lobby."""

    def __init__(self, count: int, lobby_url: str, extra: tuple[str, ...] = ()) -> None:
        self.count = count
        self.lobby_url = lobby_url
        self.extra = extra
        self.procs: list[subprocess.Popen[bytes]] = []

    def launch(self, code: str) -> None:
        """Start the bots, joining the lobby ``code`` (each exits when this process does)."""
        for k in range(1, self.count + 1):
            cmd = [sys.executable, "-m", "netplay_demo", "--headless", "--lobby", self.lobby_url,
                   "--join", code, "--name", f"bot{k}", "--parent-pid", str(os.getpid()),
                   "--seed", str(1000 + k), *self.extra]
            logger.info("starting %s", " ".join(cmd))
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL))

    def stop(self) -> None:
        """Ask every bot to leave, then make sure they are gone."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Stopper:
    """Set by SIGTERM/SIGINT, or when the parent process (``--parent-pid``) is gone."""

    def __init__(self, parent_pid: int | None = None) -> None:
        self.stop = False
        self.parent_pid = parent_pid
        self._checked = 0.0

    def install(self) -> None:
        """Turn SIGTERM and SIGINT into a clean stop (the JSON summary still prints)."""
        def on_signal(signum: int, frame: Any) -> None:
            self.stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def should_stop(self) -> bool:
        """Whether to end now."""
        now = time.monotonic()
        if self.parent_pid is not None and now - self._checked > 1.0:
            self._checked = now
            if not _alive(self.parent_pid):
                logger.info("parent %d is gone; leaving", self.parent_pid)
                self.stop = True
        return self.stop


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(predicate: Callable[[], bool], timeout: float, stopper: Stopper, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if stopper.should_stop():
            raise SystemExit(f"stopped while {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out {what}")
        time.sleep(1 / HEADLESS_FPS)


def lobby_request(net: NetSession, args: argparse.Namespace) -> tuple[str, Future[Any]]:
    """Start what ``args.role`` asks for (``join``, ``quick`` or ``host``): (what, its future)."""
    if args.role == "join":
        return f"joining {args.join}", net.join(args.join)
    if args.role == "quick":
        return "looking for a match", net.quick_match(max_players=args.max_players)
    return "hosting a lobby", net.host(public=not args.private, max_players=args.max_players)


def _start_when_ready(net: NetSession, args: argparse.Namespace, stopper: Stopper,
                      bots: BotProcesses) -> None:
    """Enter the match: a host starts it once ``--start-at`` players are in (the ``--bots``
    count: if they are late, it starts anyway after BOTS_TIMEOUT); others wait for the host."""
    lobby = net.lobby
    if lobby is not None and lobby.host == net.peer_id and not lobby.started:
        def enough() -> bool:
            lobby = net.lobby
            return lobby is not None and len(lobby.members) >= args.start_at

        if bots.count:
            try:
                _wait(enough, BOTS_TIMEOUT, stopper, "waiting for the bots")
            except TimeoutError:
                have = len(net.lobby.members) - 1 if net.lobby else 0
                logger.warning("only %d of %d bots joined within %.0f s; starting anyway",
                               have, bots.count, BOTS_TIMEOUT)
        else:
            _wait(enough, REQUEST_TIMEOUT, stopper, "waiting for players")
        net.start_match()
        return

    def started() -> bool:
        lobby = net.lobby
        return lobby is not None and (lobby.started or lobby.host == net.peer_id)

    _wait(started, 3600, stopper, "waiting for the host to start")
    if net.lobby is not None and not net.lobby.started:
        net.start_match()


def run_headless(net: NetSession, args: argparse.Namespace, lobby_url: str,
                 announce: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Enter a lobby as ``args.role`` says, start the ``--bots`` in it, play as a bot until
    ``--seconds`` or a signal, and summarise.

    ``announce`` receives ``{"lobby": code, "peer_id": id, "host": id, "role": role, "bots": n}``
    as soon as we are in the lobby, then ``{"status": summary}`` every second of the match
    (progress for watchers).
    """
    stopper = Stopper(args.parent_pid)
    stopper.install()
    _, request = lobby_request(net, args)
    _wait(request.done, REQUEST_TIMEOUT, stopper, "waiting for the lobby")
    request.result()
    lobby = net.lobby
    assert lobby is not None
    announce({"lobby": lobby.code, "peer_id": net.peer_id, "host": lobby.host,
              "role": args.role, "bots": args.bots})
    bots = BotProcesses(args.bots, lobby_url)
    try:
        bots.launch(lobby.code)
        # The waits read the lobby state only: the network events wait in the queue for the
        # match (a peer already playing may greet us before we see that the match started).
        _start_when_ready(net, args, stopper, bots)
        return _play(net, args, stopper, announce)
    finally:
        bots.stop()


MAX_CATCH_UP = 8
"""Most game frames one loop turn runs to catch up after a stall (a fixed time step)."""


def _play(net: NetSession, args: argparse.Namespace, stopper: Stopper,
          announce: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    match = Match(net, seed=args.seed, role=args.role, bots=args.bots)
    bot = Bot(rng=random.Random(args.seed))
    dt = 1 / HEADLESS_FPS
    start = time.monotonic()
    end = start + args.seconds if args.seconds else float("inf")
    next_status = start + STATUS_EVERY
    simulated = 0.0  # game time follows the wall clock: late frames are caught up
    while not stopper.should_stop() and (now := time.monotonic()) < end:
        steps = 0
        while simulated + dt <= now - start and steps < MAX_CATCH_UP:
            match.frame(bot.controls(match.world, dt), dt)
            simulated += dt
            steps += 1
        if steps == MAX_CATCH_UP:  # too far behind to catch up: let that time go
            simulated = max(simulated, now - start - dt)
        if now >= next_status:
            next_status += STATUS_EVERY
            announce({"status": match.summary()})
        delay = start + simulated + dt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return match.summary()


@contextmanager
def pygame_display(headless: bool) -> Iterator[Any]:
    """Initialise pygame (dummy video driver when ``headless``); quit it afterwards."""
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ["SDL_AUDIODRIVER"] = "dummy"
    import pygame

    pygame.display.init()
    pygame.font.init()
    try:
        yield pygame
    finally:
        pygame.quit()


def run_window(ctx_factory: Callable[[Any], Any], first_screen: Callable[[Any], Any],
               seconds: float | None, screenshot: str | None = None,
               shot_ready: Callable[[Any], bool] | None = None, headless: bool = False) -> bool:
    """The windowed loop: the screens run until one returns None, or ``--seconds`` pass.

    With ``screenshot``, the frame is saved there as a PNG (works with the dummy video driver)
    as soon as ``shot_ready(screen)`` holds, and the loop ends. Returns whether it was saved.
    """
    from . import render

    with pygame_display(headless) as pygame:
        surface = pygame.display.set_mode(render.SCREEN_SIZE)
        pygame.display.set_caption("netplay demo: squares")
        ctx = ctx_factory(render.Fonts())
        screen = first_screen(ctx)
        clock = pygame.time.Clock()
        end = time.monotonic() + seconds if seconds else float("inf")
        dt = 1 / WINDOW_FPS
        while screen is not None and time.monotonic() < end:
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    return False
                screen.handle(event)
            screen = screen.update(dt)
            if screen is None:
                break
            screen.draw(surface)
            pygame.display.flip()
            if screenshot and shot_ready is not None and shot_ready(screen):
                pygame.image.save(surface, screenshot)
                logger.info("screenshot saved to %s", screenshot)
                return True
            dt = min(clock.tick(WINDOW_FPS) / 1000, 0.1)
        return False
