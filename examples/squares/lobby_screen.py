"""Lobby screens: main menu, join by code, public lobby browser, request pending, waiting room.

Every network request returns a future at once (netplay's game-loop facade never blocks), so a
:class:`Pending` screen shows what we wait for and checks the future each frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pygame

from . import render
from .game import PALETTE
from .net import LobbyRow
from .screens import Context, PlayScreen, Screen

__all__ = [
    "Browse",
    "JoinCode",
    "MainMenu",
    "Pending",
    "WaitingRoom",
    "enter_lobby",
    "leave_lobby",
]

logger = logging.getLogger(__name__)

AUTO_REFRESH = 3.0
"""Seconds between automatic refreshes of the lobby browser."""
SUBTITLE = "a netplay demo: peer-to-peer squares that tag each other"


def enter_lobby(ctx: Context) -> Screen:
    """The screen after joining a lobby: the match if it already started, else the waiting room."""
    lobby = ctx.net.lobby
    if lobby is None:
        return MainMenu(ctx, "not in a lobby")
    ctx.entered_lobby(lobby.code)
    if lobby.started:
        return PlayScreen(ctx)
    return WaitingRoom(ctx)


def leave_lobby(ctx: Context) -> Screen:
    """Leave the lobby (without waiting on the network) and go back to the main menu."""
    return Pending(ctx, "leaving the lobby", ctx.net.leave(),
                   then=lambda ctx: MainMenu(ctx, "you left the lobby"))


class MainMenu(Screen):
    """Host (public / private, max players), join by code, quick match, browse, quit."""

    ITEMS = ("host_public", "host_private", "max_players", "join", "quick", "browse", "quit")

    def __init__(self, ctx: Context, status: str = "") -> None:
        self.ctx = ctx
        self.status = status
        self.selected = 0
        self.choice: str | None = None

    def lines(self) -> list[render.MenuLine]:
        """The menu lines as shown."""
        texts = {
            "host_public": "Host a public lobby",
            "host_private": "Host a private lobby (join by code only)",
            "max_players": f"Max players: < {self.ctx.max_players} >",
            "join": "Join by code",
            "quick": "Quick match",
            "browse": "Browse public lobbies",
            "quit": "Quit",
        }
        return [render.MenuLine(texts[item]) for item in self.ITEMS]

    def handle(self, event: pygame.event.Event) -> None:
        if event.type != pygame.KEYDOWN:
            return
        item = self.ITEMS[self.selected]
        if event.key in (pygame.K_UP, pygame.K_w):
            self.selected = (self.selected - 1) % len(self.ITEMS)
        elif event.key in (pygame.K_DOWN, pygame.K_s):
            self.selected = (self.selected + 1) % len(self.ITEMS)
        elif event.key in (pygame.K_LEFT, pygame.K_RIGHT) and item == "max_players":
            step = 1 if event.key == pygame.K_RIGHT else -1
            self.ctx.max_players = min(8, max(2, self.ctx.max_players + step))
        elif event.key in (pygame.K_RETURN, pygame.K_KP_ENTER, pygame.K_SPACE):
            self.choice = item
        elif event.key == pygame.K_ESCAPE:
            self.choice = "quit"

    def update(self, dt: float) -> Screen | None:
        choice, self.choice = self.choice, None
        net = self.ctx.net
        if choice == "quit":
            return None
        if choice in ("host_public", "host_private"):
            public = choice == "host_public"
            return Pending(self.ctx, "hosting a lobby",
                           net.host(public=public, max_players=self.ctx.max_players))
        if choice == "join":
            return JoinCode(self.ctx)
        if choice == "quick":
            return Pending(self.ctx, "looking for a match",
                           net.quick_match(max_players=self.ctx.max_players))
        if choice == "browse":
            return Browse(self.ctx)
        return self

    def draw(self, surface: pygame.Surface) -> None:
        render.draw_menu(surface, self.ctx.fonts, "Play", self.lines(), self.selected,
                         self.status, SUBTITLE,
                         "Up/Down: choose   Left/Right: max players   Enter: select   Esc: quit")


class JoinCode(Screen):
    """Type a lobby code."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.code = ""
        self.done: bool | None = None

    def handle(self, event: pygame.event.Event) -> None:
        if event.type != pygame.KEYDOWN:
            return
        if event.key == pygame.K_ESCAPE:
            self.done = False
        elif event.key in (pygame.K_RETURN, pygame.K_KP_ENTER) and self.code:
            self.done = True
        elif event.key == pygame.K_BACKSPACE:
            self.code = self.code[:-1]
        elif event.unicode and event.unicode.isalnum() and len(self.code) < 16:
            self.code += event.unicode.upper()

    def update(self, dt: float) -> Screen | None:
        if self.done is False:
            return MainMenu(self.ctx)
        if self.done:
            return Pending(self.ctx, f"joining {self.code}", self.ctx.net.join(self.code))
        return self

    def draw(self, surface: pygame.Surface) -> None:
        render.draw_menu(surface, self.ctx.fonts, "Join by code",
                         [render.MenuLine(f"code: {self.code}_")], 0, "", SUBTITLE,
                         "type the code   Enter: join   Esc: back")


class Browse(Screen):
    """Public lobbies of this game (refreshed every few seconds); Enter joins the selected one."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rows: list[LobbyRow] = []
        self.selected = 0
        self.status = "loading..."
        self.request: Future[list[LobbyRow]] | None = ctx.net.list_lobbies()
        self.action: str | None = None
        self.age = 0.0

    def handle(self, event: pygame.event.Event) -> None:
        if event.type != pygame.KEYDOWN:
            return
        if event.key == pygame.K_ESCAPE:
            self.action = "back"
        elif event.key == pygame.K_r:
            self.action = "refresh"
        elif event.key in (pygame.K_UP, pygame.K_DOWN) and self.rows:
            step = 1 if event.key == pygame.K_DOWN else -1
            self.selected = (self.selected + step) % len(self.rows)
        elif event.key in (pygame.K_RETURN, pygame.K_KP_ENTER) and self.rows:
            self.action = "join"

    def update(self, dt: float) -> Screen | None:
        if self.request is not None and self.request.done():
            request, self.request = self.request, None
            try:
                self.rows = request.result()
                self.selected = min(self.selected, max(0, len(self.rows) - 1))
                self.status = ""
            except Exception as exc:  # shown to the player, never a crash
                self.status = f"could not list lobbies: {exc}"
        action, self.action = self.action, None
        if action == "back":
            return MainMenu(self.ctx)
        self.age += dt
        if (action == "refresh" or self.age > AUTO_REFRESH) and self.request is None:
            self.age = 0.0
            self.request = self.ctx.net.list_lobbies()
        if action == "join":
            code = self.rows[self.selected].code
            return Pending(self.ctx, f"joining {code}", self.ctx.net.join(code))
        return self

    def draw(self, surface: pygame.Surface) -> None:
        rows = [f"{r.code}   {r.host_name}'s game   {r.players}/{r.max_players}"
                + ("   (playing)" if r.started else "") for r in self.rows]
        render.draw_browse(surface, self.ctx.fonts, rows, self.selected, self.status)


class Pending(Screen):
    """Waits for a lobby request (host, join, quick match) without blocking the frame."""

    def __init__(self, ctx: Context, what: str, request: Future[Any],
                 then: Callable[[Context], Screen] = enter_lobby) -> None:
        self.ctx = ctx
        self.what = what
        self.request = request
        self.then = then
        self.elapsed = 0.0

    def update(self, dt: float) -> Screen | None:
        self.elapsed += dt
        if not self.request.done():
            return self
        try:
            self.request.result()
        except Exception as exc:  # the lobby's answer, shown to the player
            logger.info("%s failed: %s", self.what, exc)
            return MainMenu(self.ctx, f"{self.what} failed: {exc}")
        return self.then(self.ctx)

    def draw(self, surface: pygame.Surface) -> None:
        dots = "." * (1 + int(self.elapsed * 3) % 3)
        render.draw_menu(surface, self.ctx.fonts, f"{self.what}{dots}", [], -1, "", SUBTITLE)


class WaitingRoom(Screen):
    """The lobby code, big, and the members; the host starts the match with Enter."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.start = False
        self.leave = False
        self.status = ""

    def handle(self, event: pygame.event.Event) -> None:
        if event.type != pygame.KEYDOWN:
            return
        if event.key in (pygame.K_RETURN, pygame.K_KP_ENTER, pygame.K_SPACE):
            self.start = True
        elif event.key == pygame.K_ESCAPE:
            self.leave = True

    def update(self, dt: float) -> Screen | None:
        net = self.ctx.net
        if self.leave:
            return leave_lobby(self.ctx)
        # The lobby state only: network events wait in the queue for the match (a peer already
        # playing may greet us before we see that the match started).
        lobby = net.lobby
        if lobby is None:
            return MainMenu(self.ctx, "the lobby closed")
        if lobby.started:
            return PlayScreen(self.ctx)
        is_host = lobby.host == net.peer_id
        enough = (self.ctx.autostart_players is not None
                  and len(lobby.members) >= self.ctx.autostart_players)
        if is_host and (self.start or enough):
            net.start_match()
            return PlayScreen(self.ctx)
        if self.start and not is_host:
            self.status = "only the host can start the match"
        self.start = False
        return self

    def draw(self, surface: pygame.Surface) -> None:
        net = self.ctx.net
        lobby = net.lobby
        if lobby is None:
            return
        members = [(name + (" (you)" if pid == net.peer_id else ""),
                    PALETTE[seq % len(PALETTE)], pid == lobby.host)
                   for pid, name, seq in lobby.members]
        render.draw_waiting_room(surface, self.ctx.fonts, lobby.code, members,
                                 lobby.max_players, lobby.public, lobby.host == net.peer_id,
                                 self.status)
