"""Rendering of the demo to off-screen surfaces (SDL dummy video driver, no window)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")

from netplay_demo import render  # noqa: E402
from netplay_demo.game import World, add_player, apply_event, step  # noqa: E402


@pytest.fixture
def fonts() -> Iterator[render.Fonts]:
    pygame.font.init()
    yield render.Fonts()
    pygame.font.quit()


def colours(surface: pygame.Surface, area: pygame.Rect | None = None) -> set[tuple[int, ...]]:
    """The distinct colours in ``area`` (sampled every 3 pixels)."""
    area = area or surface.get_rect()
    return {tuple(surface.get_at((x, y)))[:3]
            for x in range(area.left, area.right, 3) for y in range(area.top, area.bottom, 3)}


def match_world() -> World:
    world = World(me="a", host_id="a", rng=random.Random(2))
    for slot, (peer, name) in enumerate((("a", "alice"), ("b", "bob"), ("c", "carol"))):
        add_player(world, peer, name, slot)
    world.players["b"].x, world.players["b"].y = 500, 300
    world.players["b"].score = 3
    apply_event(world, "b", {"t": "shot", "id": "b:1", "x": 450, "y": 300, "vx": -500, "vy": 0})
    for _ in range(80):
        step(world, {"a": 0}, 0.05)
    world.say("carol dropped (timed out)")
    return world


def test_a_match_frame_is_drawn_with_players_gems_and_scoreboard(fonts: render.Fonts) -> None:
    surface = pygame.Surface(render.SCREEN_SIZE)
    world = match_world()
    assert world.pickups
    render.draw_match(surface, world, render.HudInfo(code="ABCD", host_name="alice"), fonts)
    seen = colours(surface)
    assert len(seen) > 20
    for player in world.players.values():
        x, y = render._to_screen(player.x, player.y)
        assert tuple(surface.get_at((x - 6, y + 6)))[:3] == player.color
    pickup = next(iter(world.pickups.values()))
    assert tuple(surface.get_at(render._to_screen(pickup.x, pickup.y)))[:3] == render.GEM
    # The scoreboard shows a colour swatch per player.
    sidebar = pygame.Rect(render.SIDEBAR_X, 0, 30, render.SCREEN_SIZE[1])
    swatches = {tuple(surface.get_at((x, y)))[:3]
                for x in range(sidebar.left, sidebar.right) for y in range(sidebar.bottom)}
    assert {p.color for p in world.players.values()} <= swatches


def test_the_net_graph_draws_a_panel_per_peer_with_an_rtt_plot(fonts: render.Fonts) -> None:
    surface = pygame.Surface(render.SCREEN_SIZE)
    surface.fill((0, 0, 0))
    rows = [render.NetRow("bob", (93, 156, 236), 42.0, 3.5, 0.02, 12.5, 11.0, 100.0,
                          [40, 45, 80, 42, 41]),
            render.NetRow("carol", (255, 206, 84), None, None, None, None, None, None)]
    area = render.draw_net_graph(surface, rows, fonts, (10, 10))
    assert area.height > 2 * 36
    inside = colours(surface, area)
    assert len(inside) > 5 and render.TEXT in inside
    plot = pygame.Rect(area.left + 232, area.top + 24 + 19, 88, 13)
    assert any(tuple(surface.get_at((x, y)))[:3] == (93, 156, 236)
               for x in range(plot.left, plot.right) for y in range(plot.top, plot.bottom))
    outside = surface.get_at((area.right + 5, area.bottom + 5))
    assert tuple(outside)[:3] == (0, 0, 0)


def test_the_match_shows_the_net_graph_when_toggled(fonts: render.Fonts) -> None:
    world = match_world()
    plain = pygame.Surface(render.SCREEN_SIZE)
    graph = pygame.Surface(render.SCREEN_SIZE)
    hud = render.HudInfo(code="ABCD")
    render.draw_match(plain, world, hud, fonts)
    hud.show_net_graph = True
    hud.net_rows = [render.NetRow("bob", (93, 156, 236), 5.0, 1.0, 0.0, 8.0, 8.0, 60.0, [5, 6])]
    render.draw_match(graph, world, hud, fonts)
    corner = pygame.Rect(render.ARENA_POS[0] + 10, render.ARENA_POS[1] + 10, 300, 60)
    assert colours(plain, corner) != colours(graph, corner)


def test_lobby_screens_draw(fonts: render.Fonts) -> None:
    surface = pygame.Surface(render.SCREEN_SIZE)
    render.draw_menu(surface, fonts, "Play", [render.MenuLine("Host"), render.MenuLine("Join")],
                     0, "status")
    assert len(colours(surface)) > 3
    surface.fill((0, 0, 0))
    render.draw_waiting_room(surface, fonts, "QX7K", [("alice", (237, 85, 101), True)], 8, True,
                             True, "")
    assert render.ACCENT in colours(surface, pygame.Rect(300, 70, 460, 110))
    surface.fill((0, 0, 0))
    render.draw_browse(surface, fonts, [], 0, "")
    assert len(colours(surface)) > 3
