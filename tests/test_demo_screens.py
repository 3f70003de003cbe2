"""The demo's lobby screens and match screen driven by key presses, against a real lobby.

Real netplay sessions in this process (SDL dummy video driver): alice hosts from the menu, bob
joins by typing the code, the host starts the match, carol finds it in the public lobby browser
and joins the running match; F3 shows the net graph and F4 puts the conditioner presets on the
links; leaving and the host change are shown as messages. A private lobby with the max-players
selector at 3 is not listed and turns the fourth player away; two quick matches from the menu
land in one lobby.
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
def sessions(lobby: Any) -> Iterator[Callable[..., NetSession]]:
    """``sessions(name, url=...)``: an open session (to the shared lobby unless ``url``)."""
    opened: list[NetSession] = []

    def open_session(name: str, url: str = lobby.url) -> NetSession:
        net = NetSession(url, name, interpolate=lerp_snapshot).open()
        opened.append(net)
        return net

    yield open_session
    for net in opened:
        net.close()


def press(screen: Screen, key: int, unicode: str = "") -> None:
    screen.handle(pygame.event.Event(pygame.KEYDOWN, key=key, unicode=unicode, mod=0))


def choose(menu: lobby_screen.MainMenu, item: str) -> None:
    """Move the menu selection down to ``item`` (from the top)."""
    assert menu.selected == 0
    for _ in range(lobby_screen.MainMenu.ITEMS.index(item)):
        press(menu, pygame.K_DOWN)
    assert menu.ITEMS[menu.selected] == item


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


def join_by_code(drive: Driver, name: str, ctx: Context, code: str) -> None:
    """``name`` picks "Join by code" in a fresh main menu, types ``code`` and presses Enter."""
    menu = lobby_screen.MainMenu(ctx)
    choose(menu, "join")
    press(menu, pygame.K_RETURN)
    drive.screens[name] = menu
    drive.until(lambda: isinstance(drive[name], lobby_screen.JoinCode), f"{name}: join screen")
    for char in code:
        press(drive[name], ord(char.lower()), char)
    press(drive[name], pygame.K_RETURN)
    drive.until(lambda: not isinstance(drive[name], (lobby_screen.JoinCode,
                                                     lobby_screen.Pending)),
                f"{name}: the join is answered")


def test_host_join_by_code_start_browse_and_play(surface: pygame.Surface,
                                                 sessions: Callable[..., NetSession]) -> None:
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
    join_by_code(drive, "bob", ctx_b, lobby.code)
    assert isinstance(drive["bob"], lobby_screen.WaitingRoom)
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
    choose(menu_c, "browse")
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
        matches = [s.match for s in drive.screens.values() if isinstance(s, PlayScreen)]
        return len(matches) == 3 and all(len(m.world.players) == 3 for m in matches)

    drive.until(everyone_sees_everyone, "three players in every world")

    # Everyone's hello reaches everyone, whether sent while the other was still in the waiting
    # room (alice and bob to each other) or as the other joined the running match (carol).
    def everyone_greeted() -> bool:
        matches = [s.match for s in drive.screens.values() if isinstance(s, PlayScreen)]
        return all(sum(kinds["chat"] for kinds in m.event_kinds.values()) == 2
                   and len(m.event_kinds) == 2 for m in matches)

    drive.until(everyone_greeted, "every hello arrives")

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

    # Every net graph row fills in: RTT, jitter, loss, kbps both ways, the interpolation delay
    # of netplay's buffer the remote squares are drawn from, and the RTT plot's samples.
    def graph_filled() -> bool:
        return all(None not in (row.rtt_ms, row.jitter_ms, row.loss, row.kbps_in, row.kbps_out,
                                row.interp_ms) and len(row.rtt_history) >= 2
                   for row in play_a.match.hud(True, 60.0).net_rows)
    drive.until(graph_filled, "the net graph fills in")

    # Two more presses: "awful" (150 ms each way, 10% loss) on all of alice's links, both
    # directions. Alice's net graph shows the RTT grow and the loss of what she receives; bob
    # measures the longer RTT to her too. One more press turns the conditioner off again.
    press(play_a, pygame.K_F4)
    press(play_a, pygame.K_c)
    assert alice.conditioner == "awful"

    def awful_links() -> bool:
        rows = play_a.match.hud(True, 60.0).net_rows
        return len(rows) == 2 and all(
            row.rtt_ms is not None and row.rtt_ms >= 200 and (row.loss or 0) > 0 for row in rows)
    drive.until(awful_links, "alice's net graph shows the awful preset on both links")
    drive.until(lambda: (bob.link(alice_id).rtt_ms or 0) >= 200, "bob sees the lag too")
    press(play_a, pygame.K_F4)
    assert alice.conditioner == "off"
    assert [m for _, m in play_a.match.world.messages if m.startswith("network preset")][-3:] == [
        "network preset: mobile", "network preset: awful", "network preset: off"]

    # Esc leaves the match for the main menu; the others see alice leave.
    press(play_a, pygame.K_ESCAPE)
    drive.until(lambda: isinstance(drive["alice"], lobby_screen.MainMenu), "alice leaves")
    assert alice.lobby is None
    play_b = drive["bob"]
    assert isinstance(play_b, PlayScreen)
    drive.until(lambda: any(m == "alice left" for _, m in play_b.match.world.messages)
                and "alice" not in [p.name for p in play_b.match.world.players.values()],
                "bob sees alice leave")
    drive.until(lambda: play_b.match.world.host_id != alice_id, "the host moves on")
    new_host = play_b.match.world.name_of(play_b.match.world.host_id)
    expected = "you are" if new_host == "bob" else f"{new_host} is"
    assert f"{expected} the host now" in play_b.match.notices
    assert any(m == f"{expected} the host now" for _, m in play_b.match.world.messages)
    press(drive["alice"], pygame.K_ESCAPE)
    assert drive["alice"].update(1 / 60) is None


def test_private_lobby_with_max_players_three_from_the_menu(
        surface: pygame.Surface, sessions: Callable[..., NetSession]) -> None:
    fonts = render.Fonts()
    nets = {name: sessions(name) for name in ("alice", "bob", "carol", "dave")}
    ctxs = {name: Context(net=net, fonts=fonts) for name, net in nets.items()}

    # Alice sets "Max players" to 3 with Left, then picks "Host a private lobby".
    menu = lobby_screen.MainMenu(ctxs["alice"])
    choose(menu, "max_players")
    for _ in range(8):
        press(menu, pygame.K_LEFT)  # stops at 2
    press(menu, pygame.K_RIGHT)
    assert ctxs["alice"].max_players == 3
    assert "Max players: < 3 >" in [line.text for line in menu.lines()]
    press(menu, pygame.K_UP)
    assert menu.ITEMS[menu.selected] == "host_private"
    press(menu, pygame.K_RETURN)
    drive = Driver(surface, alice=menu)
    drive.until(lambda: isinstance(drive["alice"], lobby_screen.WaitingRoom), "alice hosts")
    lobby = nets["alice"].lobby
    assert lobby is not None and not lobby.public and lobby.max_players == 3

    # The lobby browser does not list it (the listing was asked for after it was made).
    browse_menu = lobby_screen.MainMenu(ctxs["bob"])
    choose(browse_menu, "browse")
    press(browse_menu, pygame.K_RETURN)
    drive.screens["bob"] = browse_menu

    def listed() -> bool:
        screen = drive["bob"]
        return isinstance(screen, lobby_screen.Browse) and screen.request is None
    drive.until(listed, "bob's lobby list arrives")
    browse = drive["bob"]
    assert isinstance(browse, lobby_screen.Browse) and browse.status == ""
    assert lobby.code not in [row.code for row in browse.rows]
    press(browse, pygame.K_ESCAPE)
    drive.until(lambda: isinstance(drive["bob"], lobby_screen.MainMenu), "bob back at the menu")

    # Bob and carol join by code; dave, the fourth, is turned away with a message.
    for name in ("bob", "carol"):
        join_by_code(drive, name, ctxs[name], lobby.code)
        assert isinstance(drive[name], lobby_screen.WaitingRoom), name
    drive.until(lambda: nets["alice"].lobby is not None
                and len(nets["alice"].lobby.members) == 3, "three members")
    join_by_code(drive, "dave", ctxs["dave"], lobby.code)
    refused = drive["dave"]
    assert isinstance(refused, lobby_screen.MainMenu)
    assert refused.status.startswith(f"joining {lobby.code} failed")
    assert nets["dave"].lobby is None


def test_quick_match_from_the_menu_puts_two_players_in_one_lobby(
        lobby_factory: Any, surface: pygame.Surface,
        sessions: Callable[..., NetSession]) -> None:
    url = lobby_factory().url  # its own lobby server: no other public lobby to match into
    fonts = render.Fonts()
    nets = {name: sessions(name, url) for name in ("ann", "ben", "cat")}
    ctxs = {name: Context(net=net, fonts=fonts) for name, net in nets.items()}
    drive = Driver(surface)

    def quick_match(name: str, max_players: int = 8) -> None:
        menu = lobby_screen.MainMenu(ctxs[name])
        choose(menu, "max_players")
        for _ in range(8 - max_players):
            press(menu, pygame.K_LEFT)
        for _ in range(lobby_screen.MainMenu.ITEMS.index("quick")
                       - lobby_screen.MainMenu.ITEMS.index("max_players")):
            press(menu, pygame.K_DOWN)
        press(menu, pygame.K_RETURN)
        drive.screens[name] = menu
        drive.until(lambda: isinstance(drive[name], lobby_screen.WaitingRoom),
                    f"{name}: quick match")

    # Ann finds nothing and gets a fresh public lobby of 2; ben's quick match lands in it.
    quick_match("ann", max_players=2)
    ann = nets["ann"].lobby
    assert ann is not None and ann.host == nets["ann"].peer_id
    assert ann.public and ann.max_players == 2
    quick_match("ben")
    ben = nets["ben"].lobby
    assert ben is not None and ben.code == ann.code and ben.host == nets["ann"].peer_id
    drive.until(lambda: nets["ann"].lobby is not None and len(nets["ann"].lobby.members) == 2,
                "ann sees ben")
    # That lobby is full now: cat's quick match makes her a new one.
    quick_match("cat")
    cat = nets["cat"].lobby
    assert cat is not None and cat.code != ann.code and cat.host == nets["cat"].peer_id

    # Ann starts; both play the same match.
    press(drive["ann"], pygame.K_RETURN)
    drive.until(lambda: isinstance(drive["ann"], PlayScreen)
                and isinstance(drive["ben"], PlayScreen), "the match starts for ann and ben")

    def both_see_both() -> bool:
        return all(len(s.match.world.players) == 2 for s in (drive["ann"], drive["ben"])
                   if isinstance(s, PlayScreen))
    drive.until(both_see_both, "two players in both worlds")
