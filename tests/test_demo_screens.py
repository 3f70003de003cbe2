"""The demo's lobby screens and match screen driven by key presses, against a real lobby.

Three real netplay sessions in this process (SDL dummy video driver): alice hosts from the menu,
bob joins by typing the code, the host starts the match, carol finds it in the public lobby
browser and joins the running match; F3 and F4 work in game.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from netplay_demo import lobby_screen, render  # noqa: E402
from netplay_demo.game import lerp_snapshot  # noqa: E402
from netplay_demo.net import NetSession  # noqa: E402
from netplay_demo.screens import Context, PlayScreen, Screen  # noqa: E402

DEADLINE = 30.0


@pytest.fixture
def surface() -> Iterator[pygame.Surface]:
    pygame.display.init()
    pygame.font.init()
    yield pygame.display.set_mode(render.SCREEN_SIZE)
    pygame.quit()


@pytest.fixture
def sessions(lobby: Any) -> Iterator[Callable[[str], NetSession]]:
    opened: list[NetSession] = []

    def open_session(name: str) -> NetSession:
        net = NetSession(lobby.url, name, interpolate=lerp_snapshot).open()
        opened.append(net)
        return net

    yield open_session
    for net in opened:
        net.close()


def press(screen: Screen, key: int, unicode: str = "") -> None:
    screen.handle(pygame.event.Event(pygame.KEYDOWN, key=key, unicode=unicode, mod=0))


class Driver:
    """Runs several players' screens frame by frame, drawing each, until a condition holds."""

    def __init__(self, surface: pygame.Surface, **screens: Screen) -> None:
        self.surface = surface
        self.screens: dict[str, Screen] = screens

    def until(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not check():
            assert time.monotonic() < deadline, f"timed out: {what}"
            for name, screen in list(self.screens.items()):
                nxt = screen.update(1 / 60)
                assert nxt is not None, f"{name}'s screen quit"
                nxt.draw(self.surface)
                self.screens[name] = nxt
            time.sleep(1 / 60)  # frame pacing, as a game loop would

    def __getitem__(self, name: str) -> Screen:
        return self.screens[name]


def test_host_join_by_code_start_browse_and_play(surface: pygame.Surface,
                                                 sessions: Callable[[str], NetSession]) -> None:
    fonts = render.Fonts()
    alice, bob, carol = sessions("alice"), sessions("bob"), sessions("carol")
    entered: list[str] = []
    ctx_a = Context(net=alice, fonts=fonts, on_lobby=entered.append, seed=1)
    ctx_b = Context(net=bob, fonts=fonts, seed=2)
    ctx_c = Context(net=carol, fonts=fonts, seed=3)

    # Alice hosts a public lobby from the menu and waits in the waiting room.
    menu_a = lobby_screen.MainMenu(ctx_a)
    press(menu_a, pygame.K_RETURN)
    drive = Driver(surface, alice=menu_a)
    drive.until(lambda: isinstance(drive["alice"], lobby_screen.WaitingRoom), "alice hosts")
    lobby = alice.lobby
    alice_id = alice.peer_id
    assert lobby is not None and lobby.public and not lobby.started
    assert entered == [lobby.code]

    # Bob picks "Join by code", types it and joins.
    menu_b = lobby_screen.MainMenu(ctx_b)
    for _ in range(lobby_screen.MainMenu.ITEMS.index("join")):
        press(menu_b, pygame.K_DOWN)
    press(menu_b, pygame.K_RETURN)
    drive.screens["bob"] = menu_b
    drive.until(lambda: isinstance(drive["bob"], lobby_screen.JoinCode), "join screen")
    for char in lobby.code.lower():
        press(drive["bob"], ord(char), char)
    press(drive["bob"], pygame.K_RETURN)
    drive.until(lambda: isinstance(drive["bob"], lobby_screen.WaitingRoom), "bob joins")
    drive.until(lambda: alice.lobby is not None and len(alice.lobby.members) == 2,
                "alice sees bob in the lobby")

    # Only the host can start; then both enter the match.
    press(drive["bob"], pygame.K_RETURN)
    drive.until(lambda: "only the host" in getattr(drive["bob"], "status", ""), "bob refused")
    press(drive["alice"], pygame.K_RETURN)
    drive.until(lambda: all(isinstance(s, PlayScreen) for s in drive.screens.values()),
                "the match starts for both")

    # Carol browses the public lobbies, sees the running match and joins it.
    menu_c = lobby_screen.MainMenu(ctx_c)
    for _ in range(lobby_screen.MainMenu.ITEMS.index("browse")):
        press(menu_c, pygame.K_DOWN)
    press(menu_c, pygame.K_RETURN)
    drive.screens["carol"] = menu_c

    def listed() -> bool:
        screen = drive["carol"]
        return isinstance(screen, lobby_screen.Browse) and any(
            row.code == lobby.code and row.started for row in screen.rows)

    drive.until(listed, "carol sees the lobby in the browser")
    browse = drive["carol"]
    assert isinstance(browse, lobby_screen.Browse)
    browse.selected = [row.code for row in browse.rows].index(lobby.code)
    press(browse, pygame.K_RETURN)
    drive.until(lambda: isinstance(drive["carol"], PlayScreen), "carol enters the match")

    def everyone_sees_everyone() -> bool:
        worlds = [s.match.world for s in drive.screens.values() if isinstance(s, PlayScreen)]
        return len(worlds) == 3 and all(len(w.players) == 3 for w in worlds)

    drive.until(everyone_sees_everyone, "three players in every world")

    # F3 shows the net graph, F4 switches the link conditioner preset.
    play_a = drive["alice"]
    assert isinstance(play_a, PlayScreen)
    press(play_a, pygame.K_F3)
    press(play_a, pygame.K_F4)
    assert ctx_a.show_net_graph and alice.conditioner == "good"
    drive.until(lambda: any("network preset: good" in m for _, m in play_a.match.world.messages),
                "the preset change is shown")
    hud = play_a.match.hud(ctx_a.show_net_graph, 60.0)
    assert sorted(row.name for row in hud.net_rows) == ["bob", "carol"]

    # Esc leaves the match for the main menu; the others see alice leave.
    press(play_a, pygame.K_ESCAPE)
    drive.until(lambda: isinstance(drive["alice"], lobby_screen.MainMenu), "alice leaves")
    assert alice.lobby is None
    play_b = drive["bob"]
    assert isinstance(play_b, PlayScreen)
    drive.until(lambda: any("alice left" in m for _, m in play_b.match.world.messages)
                and "alice" not in [p.name for p in play_b.match.world.players.values()],
                "bob sees alice leave")
    drive.until(lambda: play_b.match.world.host_id != alice_id, "the host moves on")
    press(drive["alice"], pygame.K_ESCAPE)
    assert drive["alice"].update(1 / 60) is None
