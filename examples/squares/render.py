"""Drawing only: the arena, the squares with their name labels, the tag banner, the scoreboard
and the lobby screens (the net graph is :mod:`netgraph`, the label layout :mod:`layout`).

Nothing here changes game or network state. Every function takes a surface and plain data
(:class:`game.World`, :class:`HudInfo`, :class:`NetRow`, menu lines) and draws it. The screen
has three columns: the arena, the sidebar, and the net graph's own column, so the net graph
hides nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pygame

from .game import (
    ARENA_H,
    ARENA_W,
    BULLET_RADIUS,
    PICKUP_RADIUS,
    PLAYER_SIZE,
    SPLAT_TIME,
    WALLS,
    Player,
    World,
)
from .layout import Box, Label, place_labels
from .netgraph import NetRow, draw_net_graph
from .theme import ACCENT, BACKGROUND, BAD, DIM, GOOD, PANEL, TEXT, WARN, Fonts, blit_text, shade

__all__ = [
    "ARENA_POS",
    "NET_GRAPH_POS",
    "SCREEN_SIZE",
    "Drawn",
    "Fonts",
    "HudInfo",
    "MenuLine",
    "NetRow",
    "draw_browse",
    "draw_match",
    "draw_menu",
    "draw_net_graph",
    "draw_waiting_room",
]

ARENA_POS = (20, 20)
SIDEBAR_X = ARENA_POS[0] + int(ARENA_W) + 24
SIDEBAR_W = 212
NET_GRAPH_POS = (SIDEBAR_X + SIDEBAR_W + 24, ARENA_POS[1])
"""The net graph has a column of its own, right of the sidebar: it hides nothing."""
NET_GRAPH_W = 280
SCREEN_SIZE = (NET_GRAPH_POS[0] + NET_GRAPH_W + 20, 640)

FLOOR = (27, 30, 41)
GRID = (34, 38, 51)
WALL = (66, 73, 96)
WALL_EDGE = (92, 101, 130)
GEM = (150, 235, 255)
GEM_EDGE = (235, 252, 255)
GEM_GLOW = (36, 62, 78)


@dataclass
class HudInfo:
    """What the sidebar shows besides the world."""

    code: str = ""
    host_name: str = ""
    conditioner: str = "good"
    fps: float = 0.0
    show_net_graph: bool = False
    net_rows: list[NetRow] = field(default_factory=list)
    help_lines: Sequence[str] = ()


@dataclass
class MenuLine:
    """One selectable (or informative) line of a lobby screen."""

    text: str
    selectable: bool = True


@dataclass
class Drawn:
    """Where :func:`draw_match` put things (for tests, and for screens that want to know)."""

    labels: dict[str, pygame.Rect] = field(default_factory=dict)
    """The name label of each player, by peer id."""
    net_graph: pygame.Rect | None = None
    tagged_banner: pygame.Rect | None = None
    """The "You were tagged by ..." banner, while the local player waits to respawn."""


def _to_screen(x: float, y: float) -> tuple[int, int]:
    return round(ARENA_POS[0] + x), round(ARENA_POS[1] + y)


# --- the match --------------------------------------------------------------------------------


def _draw_arena(surface: pygame.Surface) -> None:
    arena = pygame.Rect(ARENA_POS, (int(ARENA_W), int(ARENA_H)))
    pygame.draw.rect(surface, FLOOR, arena)
    for gx in range(40, int(ARENA_W), 40):
        pygame.draw.line(surface, GRID, _to_screen(gx, 0), _to_screen(gx, ARENA_H - 1))
    for gy in range(40, int(ARENA_H), 40):
        pygame.draw.line(surface, GRID, _to_screen(0, gy), _to_screen(ARENA_W - 1, gy))
    for wall in WALLS:
        rect = pygame.Rect(_to_screen(wall.x, wall.y), (int(wall.w), int(wall.h)))
        pygame.draw.rect(surface, WALL, rect, border_radius=4)
        pygame.draw.rect(surface, WALL_EDGE, rect, width=2, border_radius=4)
    pygame.draw.rect(surface, WALL_EDGE, arena.inflate(4, 4), width=2, border_radius=3)


def _draw_pickups(surface: pygame.Surface, world: World) -> None:
    pulse = 1.0 + 0.15 * math.sin(world.time * 6)
    r = PICKUP_RADIUS * pulse
    for pickup in world.pickups.values():
        cx, cy = _to_screen(pickup.x, pickup.y)
        points = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
        pygame.draw.circle(surface, GEM_GLOW, (cx, cy), round(r * 1.7))
        pygame.draw.polygon(surface, GEM, points)
        pygame.draw.polygon(surface, GEM_EDGE, points, width=2)


def _square(player: Player) -> pygame.Rect:
    rect = pygame.Rect(0, 0, int(PLAYER_SIZE), int(PLAYER_SIZE))
    rect.center = _to_screen(player.x, player.y)
    return rect


def _ghost(player: Player) -> pygame.Rect:
    """Where a tagged player is shown while it waits: where the bolt caught it."""
    x, y = player.tagged_at if player.tagged_at is not None else (player.x, player.y)
    rect = pygame.Rect(0, 0, int(PLAYER_SIZE), int(PLAYER_SIZE))
    rect.center = _to_screen(x, y)
    return rect


def _draw_square(surface: pygame.Surface, world: World, player: Player) -> None:
    rect = _square(player)
    half = PLAYER_SIZE / 2
    if player.shield > 0 and int(world.time * 8) % 2 == 0:
        pygame.draw.rect(surface, TEXT, rect.inflate(10, 10), width=2, border_radius=8)
    pygame.draw.rect(surface, player.color, rect, border_radius=5)
    pygame.draw.rect(surface, shade(player.color, 0.6), rect, width=3, border_radius=5)
    eye = (rect.centerx + player.aim_x * (half - 6), rect.centery + player.aim_y * (half - 6))
    pygame.draw.circle(surface, (20, 20, 28), eye, 4)


def _draw_tagged(surface: pygame.Surface, player: Player, fonts: Fonts, me: bool) -> None:
    """A tagged player: a dashed ghost with a cross where it was caught and its countdown;
    for the local player also a ghost at its respawn spot."""
    ghost = _ghost(player)
    color = shade(player.color, 0.7)
    _dashed_rect(surface, color, ghost)
    pygame.draw.line(surface, color, ghost.inflate(-10, -10).topleft,
                     ghost.inflate(-10, -10).bottomright, 2)
    pygame.draw.line(surface, color, ghost.inflate(-10, -10).topright,
                     ghost.inflate(-10, -10).bottomleft, 2)
    if player.respawn_in > 0:
        blit_text(surface, fonts.small, f"{player.respawn_in:.1f}", ghost.midbottom, TEXT,
                  anchor="midtop")
    if me:
        spot = _square(player)
        _dashed_rect(surface, player.color, spot.inflate(6, 6))


def _dashed_rect(surface: pygame.Surface, color: tuple[int, int, int], rect: pygame.Rect,
                 dash: int = 5) -> None:
    for x in range(rect.left, rect.right, dash * 2):
        end = min(x + dash, rect.right - 1)
        pygame.draw.line(surface, color, (x, rect.top), (end, rect.top), 2)
        pygame.draw.line(surface, color, (x, rect.bottom - 1), (end, rect.bottom - 1), 2)
    for y in range(rect.top, rect.bottom, dash * 2):
        end = min(y + dash, rect.bottom - 1)
        pygame.draw.line(surface, color, (rect.left, y), (rect.left, end), 2)
        pygame.draw.line(surface, color, (rect.right - 1, y), (rect.right - 1, end), 2)


def _label_text(world: World, player: Player) -> str:
    if player.id == world.me:
        return player.name + " (you)"
    return player.name if player.alive else player.name + " (tagged)"


def _draw_players(surface: pygame.Surface, world: World, fonts: Fonts) -> dict[str, pygame.Rect]:
    """Squares (or the ghosts of tagged players), then their name labels laid out so that no
    two overlap (:mod:`layout`); returns each label's area by peer id."""
    # The local player first: its label gets the best spot; the others by id, so labels do
    # not swap places from frame to frame.
    order = sorted(world.players.values(), key=lambda p: (p.id != world.me, p.id))
    for player in reversed(order):  # the local square is drawn last, on top
        if player.alive:
            _draw_square(surface, world, player)
        else:
            _draw_tagged(surface, player, fonts, player.id == world.me)
    images = [fonts.small.render(_label_text(world, p), True,
                                 TEXT if p.id == world.me else DIM if p.alive else WARN)
              for p in order]
    anchors = [_square(p) if p.alive else _ghost(p) for p in order]
    labels = [Label(Box(a.x, a.y, a.w, a.h), image.get_width(), image.get_height())
              for a, image in zip(anchors, images, strict=True)]
    arena = Box(ARENA_POS[0], ARENA_POS[1], ARENA_W, ARENA_H)
    drawn: dict[str, pygame.Rect] = {}
    for player, anchor, image, spot in zip(order, anchors, images,
                                           place_labels(labels, arena), strict=True):
        rect = pygame.Rect(round(spot.box.x), round(spot.box.y), image.get_width(),
                           image.get_height())
        if spot.leader:
            end = (anchor.centerx, anchor.top if rect.bottom <= anchor.top else anchor.bottom)
            start = (rect.centerx, rect.bottom if rect.bottom <= anchor.top else rect.top)
            pygame.draw.line(surface, shade(player.color, 0.8), start, end, 1)
        surface.blit(image, rect)
        drawn[player.id] = rect
    return drawn


def _draw_tagged_banner(surface: pygame.Surface, world: World, fonts: Fonts
                        ) -> pygame.Rect | None:
    """While the local player waits to respawn: who tagged it and the countdown."""
    me = world.local
    if me is None or me.alive:
        return None
    arena = pygame.Rect(ARENA_POS, (int(ARENA_W), int(ARENA_H)))
    by = world.name_of(me.tagged_by) if me.tagged_by else "a bolt"
    title = fonts.large.render(f"You were tagged by {by}", True, BAD)
    count = fonts.normal.render(f"respawn in {max(0.0, me.respawn_in):.1f} s", True, TEXT)
    box = pygame.Rect(0, 0, max(title.get_width(), count.get_width()) + 40,
                      title.get_height() + count.get_height() + 26)
    box.midtop = (arena.centerx, arena.top + 60)
    panel = pygame.Surface(box.size, pygame.SRCALPHA)
    panel.fill(PANEL)
    surface.blit(panel, box)
    pygame.draw.rect(surface, BAD, box, width=2, border_radius=6)
    surface.blit(title, title.get_rect(midtop=(box.centerx, box.top + 10)))
    surface.blit(count, count.get_rect(midbottom=(box.centerx, box.bottom - 8)))
    return box


def _draw_splats(surface: pygame.Surface, world: World) -> None:
    for at, x, y, color in world.splats:
        age = (world.time - at) / SPLAT_TIME
        radius = round(PLAYER_SIZE / 2 + age * 26)
        pygame.draw.circle(surface, shade(color, 1.0 - 0.6 * age), _to_screen(x, y), radius,
                           width=max(1, round(5 * (1 - age))))


def _draw_bullets(surface: pygame.Surface, world: World) -> None:
    for bullet in world.bullets.values():
        owner = world.players.get(bullet.owner)
        color = owner.color if owner else TEXT
        center = _to_screen(bullet.x, bullet.y)
        tail = _to_screen(bullet.x - bullet.vx * 0.03, bullet.y - bullet.vy * 0.03)
        pygame.draw.line(surface, shade(color, 0.6), tail, center, 4)
        pygame.draw.circle(surface, color, center, BULLET_RADIUS)
        pygame.draw.circle(surface, (255, 255, 255), center, 2)


def _draw_sidebar(surface: pygame.Surface, world: World, hud: HudInfo, fonts: Fonts) -> None:
    x = SIDEBAR_X
    y = ARENA_POS[1]
    blit_text(surface, fonts.large, "SQUARES", (x, y), ACCENT)
    if hud.fps:
        blit_text(surface, fonts.small, f"{hud.fps:.0f} fps", (x + 212, y + 8), DIM,
                   anchor="topright")
    y += 40
    if hud.code:
        blit_text(surface, fonts.normal, f"lobby {hud.code}", (x, y), TEXT)
        y += 24
    if hud.host_name:
        blit_text(surface, fonts.small, f"host: {hud.host_name}", (x, y), DIM)
        y += 18
    net_color = {"off": GOOD, "good": GOOD, "awful": BAD}.get(hud.conditioner, WARN)
    label = {"off": "perfect (loopback)"}.get(hud.conditioner, hud.conditioner)
    blit_text(surface, fonts.small, f"network: {label}", (x, y), net_color)
    y += 30
    blit_text(surface, fonts.normal, "SCORE", (x, y), DIM)
    y += 26
    ranking = sorted(world.players.values(), key=lambda p: (-p.score, p.name))
    for player in ranking:
        pygame.draw.rect(surface, player.color, pygame.Rect(x, y + 2, 14, 14), border_radius=3)
        crown = " *" if player.id == world.host_id else ""
        name = player.name + crown
        color = TEXT if player.id == world.me else DIM
        blit_text(surface, fonts.normal, name, (x + 22, y), color)
        blit_text(surface, fonts.normal, str(player.score), (x + 212, y), color,
                   anchor="topright")
        y += 24
    blit_text(surface, fonts.small, "* host (owns the gems)", (x, y + 2), DIM)
    y += 34
    for _, text in world.messages[-6:]:
        blit_text(surface, fonts.small, text[:34], (x, y), WARN)
        y += 18
    bottom = ARENA_POS[1] + int(ARENA_H)
    for i, line in enumerate(reversed(hud.help_lines)):
        blit_text(surface, fonts.small, line, (x, bottom - 16 - i * 18), DIM)


def draw_match(surface: pygame.Surface, world: World, hud: HudInfo, fonts: Fonts) -> Drawn:
    """Draw one frame of the match: arena, gems, bolts, players and their labels, the tag
    banner, the sidebar, and the net graph in its own column. Returns where things went."""
    surface.fill(BACKGROUND)
    _draw_arena(surface)
    _draw_pickups(surface, world)
    _draw_bullets(surface, world)
    _draw_splats(surface, world)
    drawn = Drawn(labels=_draw_players(surface, world, fonts))
    drawn.tagged_banner = _draw_tagged_banner(surface, world, fonts)
    _draw_sidebar(surface, world, hud, fonts)
    if hud.show_net_graph:
        drawn.net_graph = draw_net_graph(surface, hud.net_rows, fonts, NET_GRAPH_POS,
                                         NET_GRAPH_W)
    else:
        blit_text(surface, fonts.small, "F3: net graph", (NET_GRAPH_POS[0] + 10,
                                                          NET_GRAPH_POS[1] + 6), DIM)
    return drawn


# --- lobby screens ----------------------------------------------------------------------------


def _title(surface: pygame.Surface, fonts: Fonts, title: str, subtitle: str) -> None:
    surface.fill(BACKGROUND)
    w = surface.get_width()
    blit_text(surface, fonts.huge, "SQUARES", (w / 2, 40), ACCENT, anchor="midtop")
    blit_text(surface, fonts.normal, subtitle, (w / 2, 140), DIM, anchor="midtop")
    blit_text(surface, fonts.large, title, (w / 2, 190), TEXT, anchor="midtop")


def draw_menu(surface: pygame.Surface, fonts: Fonts, title: str, lines: Sequence[MenuLine],
              selected: int, status: str = "", subtitle: str = "", hint: str = "") -> None:
    """A menu: title, lines (the selected one highlighted), a status line and a key hint."""
    _title(surface, fonts, title, subtitle)
    w = surface.get_width()
    y = 250
    for i, line in enumerate(lines):
        color = ACCENT if i == selected else TEXT if line.selectable else DIM
        rect = blit_text(surface, fonts.normal, line.text, (w / 2, y), color, anchor="midtop")
        if i == selected:
            pygame.draw.rect(surface, ACCENT, rect.inflate(24, 10), width=2, border_radius=6)
        y += 36
    if status:
        blit_text(surface, fonts.normal, status, (w / 2, surface.get_height() - 70), WARN,
                   anchor="midtop")
    if hint:
        blit_text(surface, fonts.small, hint, (w / 2, surface.get_height() - 34), DIM,
                   anchor="midtop")


def draw_browse(surface: pygame.Surface, fonts: Fonts, rows: Sequence[str], selected: int,
                status: str) -> None:
    """The public lobby list."""
    draw_menu(surface, fonts, "Public lobbies",
              [MenuLine(r) for r in rows] or [MenuLine("no public lobbies yet", False)],
              selected if rows else -1, status, hint="Enter: join   R: refresh   Esc: back")


def draw_waiting_room(surface: pygame.Surface, fonts: Fonts, code: str,
                      members: Sequence[tuple[str, tuple[int, int, int], bool]],
                      max_players: int, public: bool, is_host: bool, status: str) -> None:
    """The lobby while waiting: the code, big, and the members (name, colour, is host)."""
    surface.fill(BACKGROUND)
    w = surface.get_width()
    kind = "public" if public else "private"
    blit_text(surface, fonts.normal, f"{kind} lobby - tell your friends the code", (w / 2, 36),
               DIM, anchor="midtop")
    blit_text(surface, fonts.huge, code or "....", (w / 2, 70), ACCENT, anchor="midtop")
    blit_text(surface, fonts.large, f"players {len(members)}/{max_players}", (w / 2, 200),
               TEXT, anchor="midtop")
    y = 250
    for name, color, host in members:
        pygame.draw.rect(surface, color, pygame.Rect(w / 2 - 120, y + 2, 18, 18), border_radius=4)
        blit_text(surface, fonts.normal, name + ("  (host)" if host else ""), (w / 2 - 92, y))
        y += 30
    hint = ("Enter: start the match   Esc: leave" if is_host
            else "waiting for the host to start   Esc: leave")
    blit_text(surface, fonts.normal, status or hint, (w / 2, surface.get_height() - 60),
               WARN if status else DIM, anchor="midtop")
