"""Rendering of the demo to off-screen surfaces (SDL dummy video driver, no window)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")

from netplay_demo import netgraph, render  # noqa: E402
from netplay_demo.game import (  # noqa: E402
    ARENA_H,
    ARENA_W,
    World,
    add_player,
    apply_event,
    apply_remote_state,
    step,
)
from netplay_demo.theme import shade  # noqa: E402


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
    assert area.height >= netgraph.HEADER_H + 2 * netgraph.ROW_H
    inside = colours(surface, area)
    assert len(inside) > 5 and render.TEXT in inside
    plot = netgraph.plot_rect((10, 10), area.width, 0)
    assert area.contains(plot)
    assert any(tuple(surface.get_at((x, y)))[:3] == (93, 156, 236)
               for x in range(plot.left, plot.right) for y in range(plot.top, plot.bottom))
    # The plot's scale is written right of it: "100 ms" at the top, "0" at the bottom.
    scale = pygame.Rect(plot.right + 4, plot.top - 3, 44, plot.height + 6)
    assert area.contains(scale)
    assert len(colours(surface, scale)) > 2
    outside = surface.get_at((area.right + 5, area.bottom + 5))
    assert tuple(outside)[:3] == (0, 0, 0)


def test_net_graph_fields_are_labelled_and_separated() -> None:
    awful = render.NetRow("bob", (93, 156, 236), 370.84, 50.2, 0.125, 13.52, 22.0, 180.4)
    assert netgraph.stat_lines(awful) == ("rtt 370.8 ms | jitter 50.2 ms | interp 180 ms",
                                          "in 13.5 kbps | out 22.0 kbps")
    assert netgraph.loss_text(awful) == "loss 12.5%"
    empty = render.NetRow("carol", (1, 2, 3), None, None, None, None, None, None)
    assert netgraph.stat_lines(empty) == ("rtt -- | jitter -- | interp --", "in -- | out --")
    assert netgraph.loss_text(empty) == "loss --"


@pytest.mark.parametrize(("path", "text"), [("host", "direct"), ("srflx", "direct via NAT"),
                                            ("prflx", "direct via NAT"),
                                            ("relay", "relayed (TURN)"), (None, "")])
def test_the_net_graph_says_which_path_a_link_takes(path: str | None, text: str) -> None:
    row = render.NetRow("bob", (1, 2, 3), 1.0, 0.1, 0.0, 1.0, 1.0, 50.0, (), path)
    assert netgraph.path_text(row) == text


@pytest.mark.parametrize(("samples", "top"), [([], 10), ([5, 6], 10), ([40, 45, 80], 100),
                                              ([101], 200), ([370.8], 500), ([1e6], 10000)])
def test_the_rtt_plot_scale_is_a_round_number_above_every_sample(samples: list[float],
                                                                 top: float) -> None:
    assert netgraph.rtt_scale(samples) == top


def test_eight_peers_of_net_graph_fit_on_screen_beside_the_arena(fonts: render.Fonts) -> None:
    world = match_world()
    hud = render.HudInfo(code="ABCD", show_net_graph=True, net_rows=[
        render.NetRow(f"peer{i}", (93, 156, 236), 42.0, 3.5, 0.0, 8.0, 8.0, 60.0, [5, 6])
        for i in range(7)])
    drawn = render.draw_match(pygame.Surface(render.SCREEN_SIZE), world, hud, fonts)
    assert drawn.net_graph is not None
    assert pygame.Rect((0, 0), render.SCREEN_SIZE).contains(drawn.net_graph)
    arena = pygame.Rect(render.ARENA_POS, (int(ARENA_W), int(ARENA_H))).inflate(4, 4)
    assert not drawn.net_graph.colliderect(arena)


def test_the_net_graph_hides_nothing_of_the_arena_or_the_scoreboard(fonts: render.Fonts
                                                                     ) -> None:
    world = match_world()
    plain = pygame.Surface(render.SCREEN_SIZE)
    graph = pygame.Surface(render.SCREEN_SIZE)
    hud = render.HudInfo(code="ABCD")
    render.draw_match(plain, world, hud, fonts)
    hud.show_net_graph = True
    hud.net_rows = [render.NetRow("bob", (93, 156, 236), 5.0, 1.0, 0.0, 8.0, 8.0, 60.0, [5, 6])]
    drawn = render.draw_match(graph, world, hud, fonts)
    assert drawn.net_graph is not None
    # The graph shows up in its own column...
    assert colours(plain, drawn.net_graph) != colours(graph, drawn.net_graph)
    # ...and the arena (its top-left corner included) and the sidebar are the same pixels.
    kept = pygame.Rect(0, 0, render.SIDEBAR_X + render.SIDEBAR_W, render.SCREEN_SIZE[1])
    assert not drawn.net_graph.colliderect(kept)
    same = [(x, y) for x in range(kept.left, kept.right, 2) for y in range(kept.top, kept.bottom, 2)
            if plain.get_at((x, y)) == graph.get_at((x, y))]
    assert len(same) == len(range(kept.left, kept.right, 2)) * len(range(kept.top, kept.bottom, 2))


def crowd_world() -> World:
    """Five players within a few pixels of each other, with long names."""
    world = World(me="a", host_id="a", rng=random.Random(3))
    names = ("alice", "bartholomew", "carol", "dorothea", "eve")
    for slot, name in enumerate(names):
        player = add_player(world, "abcde"[slot], name, slot)
        player.x, player.y = 200 + (slot % 3) * 28, 300 + (slot // 3) * 30
        player.shield = 0
    return world


def test_name_labels_of_nearby_squares_do_not_overlap(fonts: render.Fonts) -> None:
    world = crowd_world()
    surface = pygame.Surface(render.SCREEN_SIZE)
    drawn = render.draw_match(surface, world, render.HudInfo(code="ABCD"), fonts)
    assert sorted(drawn.labels) == sorted(world.players)
    rects = list(drawn.labels.values())
    for i, a in enumerate(rects):
        assert a.collidelist(rects[i + 1:]) == -1, (a, rects)
    arena = pygame.Rect(render.ARENA_POS, (int(ARENA_W), int(ARENA_H)))
    for peer, rect in drawn.labels.items():
        assert arena.contains(rect)
        # The label is drawn there (text pixels) and does not cover its own square.
        assert len(colours(surface, rect)) > 2
        player = world.players[peer]
        x, y = render._to_screen(player.x, player.y)
        assert not rect.collidepoint(x, y)
    # The local player's label, first served, sits right above its square.
    me = world.players["a"]
    assert drawn.labels["a"].midbottom[0] == render._to_screen(me.x, me.y)[0]


def test_a_tagged_local_player_sees_who_tagged_it_and_a_countdown(fonts: render.Fonts) -> None:
    world = crowd_world()
    apply_event(world, "b", {"t": "shot", "id": "b:1", "x": world.players["a"].x - 40,
                             "y": world.players["a"].y, "vx": 500, "vy": 0})
    for _ in range(50):
        step(world, {"a": 0}, 0.02)
    me = world.players["a"]
    assert me.tagged_by == "b" and me.tagged_at is not None and me.respawn_in > 0
    surface = pygame.Surface(render.SCREEN_SIZE)
    drawn = render.draw_match(surface, world, render.HudInfo(code="ABCD"), fonts)
    assert drawn.tagged_banner is not None
    assert render.BAD in colours(surface, drawn.tagged_banner)
    # Its ghost (dashed outline and cross, in its colour) stays where it was caught.
    gx, gy = render._to_screen(*me.tagged_at)
    ghost = pygame.Rect(gx - 13, gy - 13, 26, 26)
    assert shade(me.color, 0.7) in colours_all(surface, ghost)
    # Respawned: the banner is gone.
    for _ in range(40):
        step(world, {"a": 0}, 0.05)
    assert me.alive
    drawn = render.draw_match(surface, world, render.HudInfo(code="ABCD"), fonts)
    assert drawn.tagged_banner is None


def test_a_tagged_remote_player_shows_a_marker_and_countdown(fonts: render.Fonts) -> None:
    world = crowd_world()
    bob = world.players["b"]
    apply_event(world, "b", {"t": "hit", "by": "a", "bullet": "a:9", "victim": "b"})
    assert not bob.alive and bob.tagged_by == "a" and bob.respawn_in > 0
    # Older snapshots saying bob is alive do not bring him back before his countdown ends.
    apply_remote_state(world, "b", {"x": bob.x, "y": bob.y, "al": 1})
    assert not bob.alive
    step(world, {"a": 0}, 0.5)
    assert 0 < bob.respawn_in < 1.5
    surface = pygame.Surface(render.SCREEN_SIZE)
    drawn = render.draw_match(surface, world, render.HudInfo(code="ABCD"), fonts)
    assert drawn.tagged_banner is None  # that is for the local player only
    assert bob.tagged_at is not None
    gx, gy = render._to_screen(*bob.tagged_at)
    ghost = pygame.Rect(gx - 13, gy - 13, 26, 26)
    assert shade(bob.color, 0.7) in colours_all(surface, ghost)
    # The countdown is written under the ghost, and the label says "(tagged)".
    below = pygame.Rect(gx - 15, gy + 13, 30, 16)
    assert render.TEXT in colours_all(surface, below)
    assert drawn.labels["b"].width > fonts.small.size("bartholomew")[0]
    # After the countdown, a snapshot saying alive brings him back.
    step(world, {"a": 0}, 1.5)
    apply_remote_state(world, "b", {"x": bob.x, "y": bob.y, "al": 1})
    assert bob.alive and bob.tagged_at is None


def colours_all(surface: pygame.Surface, area: pygame.Rect) -> set[tuple[int, ...]]:
    """Every distinct colour in ``area``."""
    return {tuple(surface.get_at((x, y)))[:3]
            for x in range(area.left, area.right) for y in range(area.top, area.bottom)}


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
