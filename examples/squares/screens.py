"""Screens of the windowed demo (solarwolf style: the loop calls the current screen).

A screen reacts to pygame events (:meth:`Screen.handle`), advances (:meth:`Screen.update`, which
returns the next screen, itself, or None to quit) and draws (:meth:`Screen.draw`). The lobby
screens are in :mod:`lobby_screen`; this module holds the shared :class:`Context` and the match
screen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pygame

from . import controls, render
from .bots import Bot
from .match import Match
from .net import NetSession

__all__ = ["Context", "PlayScreen", "Screen"]

logger = logging.getLogger(__name__)

HELP = (
    "move: arrows / WASD   tag: space",
    "F3: net graph   F4: network preset",
    "Esc: leave",
)


@dataclass
class Context:
    """What every screen shares: the network session and the command-line choices."""

    net: NetSession
    fonts: render.Fonts
    max_players: int = 8
    autostart_players: int | None = None
    """Host starts the match on its own once this many players are in (``--bots``, screenshots)."""
    on_lobby: Callable[[str], None] = lambda code: None
    """Called once with the lobby code when we enter a lobby (launches the ``--bots``)."""
    show_net_graph: bool = False
    autopilot: Bot | None = None
    """When set, a bot plays for the local player (screenshots, demos)."""
    seed: int | None = None
    entered: set[str] = field(default_factory=set)

    def entered_lobby(self, code: str) -> None:
        """Tell ``on_lobby`` about a lobby, once."""
        if code not in self.entered:
            self.entered.add(code)
            self.on_lobby(code)


class Screen:
    """Base class: a screen that does nothing."""

    def handle(self, event: pygame.event.Event) -> None:
        """React to one pygame event."""

    def update(self, dt: float) -> Screen | None:
        """Advance; return the screen to show next (``self`` to stay, None to quit)."""
        return self

    def draw(self, surface: pygame.Surface) -> None:
        """Draw the screen."""


class PlayScreen(Screen):
    """The match: keyboard controls, F3 net graph, F4 link conditioner presets, Esc leaves
    (back to the main menu, where Esc quits)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.match = Match(ctx.net, seed=ctx.seed)
        self.leave = False
        self.fps = 0.0

    def handle(self, event: pygame.event.Event) -> None:
        if event.type != pygame.KEYDOWN:
            return
        if event.key == pygame.K_F3:
            self.ctx.show_net_graph = not self.ctx.show_net_graph
        elif event.key in (pygame.K_F4, pygame.K_c):
            preset = self.ctx.net.cycle_conditioner()
            self.match.world.say(f"network preset: {preset}")
        elif event.key == pygame.K_ESCAPE:
            self.leave = True

    def update(self, dt: float) -> Screen | None:
        if self.leave:
            # Imported here: the lobby screens lead into this one, so they import this module.
            from .lobby_screen import leave_lobby

            return leave_lobby(self.ctx)
        if self.ctx.autopilot is not None:
            bits = self.ctx.autopilot.controls(self.match.world, dt)
        else:
            bits = controls.from_keys(pygame.key.get_pressed())
        self.match.frame(bits, dt)
        if dt > 0:
            self.fps += (1 / dt - self.fps) * 0.05  # smoothed for display
        return self

    def draw(self, surface: pygame.Surface) -> None:
        hud = self.match.hud(self.ctx.show_net_graph, self.fps, HELP)
        render.draw_match(surface, self.match.world, hud, self.ctx.fonts)
