"""Drawing only: the arena, the scoreboard, the net graph and the lobby screens.

Nothing here changes game or network state. Every function takes a surface and plain data
(:class:`game.World`, :class:`HudInfo`, :class:`NetRow`, menu lines) and draws it.
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
    World,
)

__all__ = [
    "ARENA_POS",
    "SCREEN_SIZE",
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

SCREEN_SIZE = (1060, 640)
ARENA_POS = (20, 20)
SIDEBAR_X = ARENA_POS[0] + int(ARENA_W) + 24

BACKGROUND = (17, 19, 27)
FLOOR = (27, 30, 41)
GRID = (34, 38, 51)
WALL = (66, 73, 96)
WALL_EDGE = (92, 101, 130)
TEXT = (226, 230, 240)
DIM = (128, 136, 158)
ACCENT = (255, 206, 84)
GEM = (150, 235, 255)
GEM_EDGE = (235, 252, 255)
GEM_GLOW = (36, 62, 78)
GOOD = (120, 220, 140)
WARN = (255, 190, 90)
BAD = (240, 100, 100)
PANEL = (12, 14, 20, 205)


class Fonts:
    """The few fonts the demo uses (pygame's default font; needs ``pygame.font.init()``)."""

    def __init__(self) -> None:
        self.small = pygame.font.Font(None, 20)
        self.normal = pygame.font.Font(None, 26)
        self.large = pygame.font.Font(None, 40)
        self.huge = pygame.font.Font(None, 120)


@dataclass
class NetRow:
    """One peer's line in the net graph (filled from netplay's stats by the match)."""

    name: str
    color: tuple[int, int, int]
    rtt_ms: float | None
    jitter_ms: float | None
    loss: float | None
    kbps_in: float | None
    kbps_out: float | None
    interp_ms: float | None
    rtt_history: Sequence[float] = ()


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


def _blit_text(surface: pygame.Surface, font: pygame.font.Font, text: str,
               pos: tuple[float, float], color: tuple[int, int, int] = TEXT,
               anchor: str = "topleft") -> pygame.Rect:
    image = font.render(text, True, color)
    rect = image.get_rect(**{anchor: (round(pos[0]), round(pos[1]))})
    surface.blit(image, rect)
    return rect


def _to_screen(x: float, y: float) -> tuple[int, int]:
    return round(ARENA_POS[0] + x), round(ARENA_POS[1] + y)


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return (min(255, round(color[0] * factor)), min(255, round(color[1] * factor)),
            min(255, round(color[2] * factor)))


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


def _draw_players(surface: pygame.Surface, world: World, fonts: Fonts) -> None:
    half = PLAYER_SIZE / 2
    for player in sorted(world.players.values(), key=lambda p: p.id == world.me):
        cx, cy = _to_screen(player.x, player.y)
        rect = pygame.Rect(0, 0, int(PLAYER_SIZE), int(PLAYER_SIZE))
        rect.center = (cx, cy)
        if not player.alive:
            continue
        if player.shield > 0 and int(world.time * 8) % 2 == 0:
            pygame.draw.rect(surface, TEXT, rect.inflate(10, 10), width=2, border_radius=8)
        pygame.draw.rect(surface, player.color, rect, border_radius=5)
        pygame.draw.rect(surface, _shade(player.color, 0.6), rect, width=3, border_radius=5)
        eye = (cx + player.aim_x * (half - 6), cy + player.aim_y * (half - 6))
        pygame.draw.circle(surface, (20, 20, 28), eye, 4)
        label = player.name + (" (you)" if player.id == world.me else "")
        _blit_text(surface, fonts.small, label, (cx, cy - half - 4),
                   TEXT if player.id == world.me else DIM, anchor="midbottom")


def _draw_splats(surface: pygame.Surface, world: World) -> None:
    for at, x, y, color in world.splats:
        age = (world.time - at) / SPLAT_TIME
        radius = round(PLAYER_SIZE / 2 + age * 26)
        pygame.draw.circle(surface, _shade(color, 1.0 - 0.6 * age), _to_screen(x, y), radius,
                           width=max(1, round(5 * (1 - age))))


def _draw_bullets(surface: pygame.Surface, world: World) -> None:
    for bullet in world.bullets.values():
        owner = world.players.get(bullet.owner)
        color = owner.color if owner else TEXT
        center = _to_screen(bullet.x, bullet.y)
        tail = _to_screen(bullet.x - bullet.vx * 0.03, bullet.y - bullet.vy * 0.03)
        pygame.draw.line(surface, _shade(color, 0.6), tail, center, 4)
        pygame.draw.circle(surface, color, center, BULLET_RADIUS)
        pygame.draw.circle(surface, (255, 255, 255), center, 2)


def _draw_sidebar(surface: pygame.Surface, world: World, hud: HudInfo, fonts: Fonts) -> None:
    x = SIDEBAR_X
    y = ARENA_POS[1]
    _blit_text(surface, fonts.large, "SQUARES", (x, y), ACCENT)
    if hud.fps:
        _blit_text(surface, fonts.small, f"{hud.fps:.0f} fps", (x + 212, y + 8), DIM,
                   anchor="topright")
    y += 40
    if hud.code:
        _blit_text(surface, fonts.normal, f"lobby {hud.code}", (x, y), TEXT)
        y += 24
    if hud.host_name:
        _blit_text(surface, fonts.small, f"host: {hud.host_name}", (x, y), DIM)
        y += 18
    net_color = {"off": GOOD, "good": GOOD, "awful": BAD}.get(hud.conditioner, WARN)
    label = {"off": "perfect (loopback)"}.get(hud.conditioner, hud.conditioner)
    _blit_text(surface, fonts.small, f"network: {label}", (x, y), net_color)
    y += 30
    _blit_text(surface, fonts.normal, "SCORE", (x, y), DIM)
    y += 26
    ranking = sorted(world.players.values(), key=lambda p: (-p.score, p.name))
    for player in ranking:
        pygame.draw.rect(surface, player.color, pygame.Rect(x, y + 2, 14, 14), border_radius=3)
        crown = " *" if player.id == world.host_id else ""
        name = player.name + crown
        color = TEXT if player.id == world.me else DIM
        _blit_text(surface, fonts.normal, name, (x + 22, y), color)
        _blit_text(surface, fonts.normal, str(player.score), (x + 212, y), color,
                   anchor="topright")
        y += 24
    _blit_text(surface, fonts.small, "* host (owns the gems)", (x, y + 2), DIM)
    y += 34
    for _, text in world.messages[-6:]:
        _blit_text(surface, fonts.small, text[:34], (x, y), WARN)
        y += 18
    bottom = ARENA_POS[1] + int(ARENA_H)
    for i, line in enumerate(reversed(hud.help_lines)):
        _blit_text(surface, fonts.small, line, (x, bottom - 16 - i * 18), DIM)


def draw_match(surface: pygame.Surface, world: World, hud: HudInfo, fonts: Fonts) -> None:
    """Draw one frame of the match: arena, gems, bolts, players, sidebar and net graph."""
    surface.fill(BACKGROUND)
    _draw_arena(surface)
    _draw_pickups(surface, world)
    _draw_bullets(surface, world)
    _draw_splats(surface, world)
    _draw_players(surface, world, fonts)
    _draw_sidebar(surface, world, hud, fonts)
    if hud.show_net_graph:
        draw_net_graph(surface, hud.net_rows, fonts, (ARENA_POS[0] + 8, ARENA_POS[1] + 8))


# --- net graph --------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str, digits: int = 0) -> str:
    return "--" if value is None else f"{value:.{digits}f}{unit}"


def _plot(surface: pygame.Surface, rect: pygame.Rect, values: Sequence[float],
          color: tuple[int, int, int]) -> None:
    pygame.draw.rect(surface, (30, 34, 46), rect)
    if len(values) < 2:
        return
    top = max(20.0, max(values) * 1.2)
    step = rect.width / (len(values) - 1)
    points = [(rect.left + i * step, rect.bottom - 1 - min(v, top) / top * (rect.height - 2))
              for i, v in enumerate(values)]
    pygame.draw.lines(surface, color, False, points, 2)


def draw_net_graph(surface: pygame.Surface, rows: Sequence[NetRow], fonts: Fonts,
                   pos: tuple[int, int]) -> pygame.Rect:
    """Draw a net_graph panel per peer (RTT, jitter, loss, kbps, interpolation delay, RTT plot).

    Returns the area drawn, so tests can check it.
    """
    row_h = 40
    width = 340
    height = 24 + max(1, len(rows)) * row_h
    panel = pygame.Surface((width, height), pygame.SRCALPHA)
    panel.fill(PANEL)
    surface.blit(panel, pos)
    x, y = pos[0] + 10, pos[1] + 5
    _blit_text(surface, fonts.small, "net graph (F3)", (x, y), DIM)
    y += 19
    if not rows:
        _blit_text(surface, fonts.small, "no peers connected", (x, y + 4), DIM)
    for row in rows:
        pygame.draw.rect(surface, row.color, pygame.Rect(x, y + 3, 10, 10), border_radius=2)
        _blit_text(surface, fonts.small, row.name[:12], (x + 16, y), TEXT)
        _blit_text(surface, fonts.small, f"rtt {_fmt(row.rtt_ms, ' ms', 1)}", (x + 110, y), TEXT)
        _blit_text(surface, fonts.small, f"jit {_fmt(row.jitter_ms, ' ms', 1)}", (x + 190, y),
                   TEXT)
        loss = "--" if row.loss is None else f"{row.loss * 100:.1f}%"
        loss_color = GOOD if (row.loss or 0) < 0.02 else WARN if (row.loss or 0) < 0.08 else BAD
        _blit_text(surface, fonts.small, f"loss {loss}", (x + 262, y), loss_color)
        kbps = f"{_fmt(row.kbps_in, '', 1)}/{_fmt(row.kbps_out, '', 1)} kbps"
        _blit_text(surface, fonts.small, kbps, (x + 16, y + 17), DIM)
        _blit_text(surface, fonts.small, f"interp {_fmt(row.interp_ms, ' ms')}", (x + 124, y + 17),
                   DIM)
        _plot(surface, pygame.Rect(x + 222, y + 19, width - 242, 13), row.rtt_history, row.color)
        y += row_h
    return pygame.Rect(pos, (width, height))


# --- lobby screens ----------------------------------------------------------------------------


def _title(surface: pygame.Surface, fonts: Fonts, title: str, subtitle: str) -> None:
    surface.fill(BACKGROUND)
    w = surface.get_width()
    _blit_text(surface, fonts.huge, "SQUARES", (w / 2, 40), ACCENT, anchor="midtop")
    _blit_text(surface, fonts.normal, subtitle, (w / 2, 140), DIM, anchor="midtop")
    _blit_text(surface, fonts.large, title, (w / 2, 190), TEXT, anchor="midtop")


def draw_menu(surface: pygame.Surface, fonts: Fonts, title: str, lines: Sequence[MenuLine],
              selected: int, status: str = "", subtitle: str = "", hint: str = "") -> None:
    """A menu: title, lines (the selected one highlighted), a status line and a key hint."""
    _title(surface, fonts, title, subtitle)
    w = surface.get_width()
    y = 250
    for i, line in enumerate(lines):
        color = ACCENT if i == selected else TEXT if line.selectable else DIM
        rect = _blit_text(surface, fonts.normal, line.text, (w / 2, y), color, anchor="midtop")
        if i == selected:
            pygame.draw.rect(surface, ACCENT, rect.inflate(24, 10), width=2, border_radius=6)
        y += 36
    if status:
        _blit_text(surface, fonts.normal, status, (w / 2, surface.get_height() - 70), WARN,
                   anchor="midtop")
    if hint:
        _blit_text(surface, fonts.small, hint, (w / 2, surface.get_height() - 34), DIM,
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
    _blit_text(surface, fonts.normal, f"{kind} lobby - tell your friends the code", (w / 2, 36),
               DIM, anchor="midtop")
    _blit_text(surface, fonts.huge, code or "....", (w / 2, 70), ACCENT, anchor="midtop")
    _blit_text(surface, fonts.large, f"players {len(members)}/{max_players}", (w / 2, 200),
               TEXT, anchor="midtop")
    y = 250
    for name, color, host in members:
        pygame.draw.rect(surface, color, pygame.Rect(w / 2 - 120, y + 2, 18, 18), border_radius=4)
        _blit_text(surface, fonts.normal, name + ("  (host)" if host else ""), (w / 2 - 92, y))
        y += 30
    hint = ("Enter: start the match   Esc: leave" if is_host
            else "waiting for the host to start   Esc: leave")
    _blit_text(surface, fonts.normal, status or hint, (w / 2, surface.get_height() - 60),
               WARN if status else DIM, anchor="midtop")
