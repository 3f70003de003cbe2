"""The net graph (F3): one panel per peer with its link numbers and a plot of its recent RTT.

Each peer gets three labelled lines and a plot with a scale::

    [] bob                                 loss 2.0%
    rtt 42.1 ms | jitter 3.5 ms | interp 100 ms
    in 13.5 kbps | out 22.0 kbps
    /\\__/\\_____________________________  100 ms
    ___________________________________  0

``in`` is what this player receives from that peer, ``out`` what it sends to it. The text and the
scale are pure functions (:func:`stat_lines`, :func:`rtt_scale`), so tests check them without
drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pygame

from .theme import BAD, DIM, GOOD, PANEL, TEXT, WARN, Fonts, blit_text

__all__ = [
    "HEADER_H",
    "ROW_H",
    "NetRow",
    "draw_net_graph",
    "loss_text",
    "plot_rect",
    "rtt_scale",
    "stat_lines",
]

HEADER_H = 40
ROW_H = 80
SCALES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""The plot's top, in ms: the smallest of these that holds every sample."""
PLOT_BG = (30, 34, 46)
PLOT_GRID = (52, 58, 76)


@dataclass
class NetRow:
    """One peer's panel in the net graph (filled from netplay's stats by the match)."""

    name: str
    color: tuple[int, int, int]
    rtt_ms: float | None
    jitter_ms: float | None
    loss: float | None
    kbps_in: float | None
    kbps_out: float | None
    interp_ms: float | None
    rtt_history: Sequence[float] = ()
    path: str | None = None
    """The ICE candidate pair's kind (``PeerStats.candidate_pair.kind``), if known."""


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "--" if value is None else f"{value:.{digits}f} {unit}"


def stat_lines(row: NetRow) -> tuple[str, str]:
    """The two text lines under a peer's name: times, then bandwidth in and out."""
    times = (f"rtt {_fmt(row.rtt_ms, 'ms')} | jitter {_fmt(row.jitter_ms, 'ms')} | "
             f"interp {_fmt(row.interp_ms, 'ms', 0)}")
    rates = f"in {_fmt(row.kbps_in, 'kbps')} | out {_fmt(row.kbps_out, 'kbps')}"
    return times, rates


def path_text(row: NetRow) -> str:
    """Which way the packets go: ``direct``, ``direct via NAT``, ``relayed (TURN)`` or ``""``."""
    return {"host": "direct", "srflx": "direct via NAT", "prflx": "direct via NAT",
            "relay": "relayed (TURN)"}.get(row.path or "", "")


def loss_text(row: NetRow) -> str:
    """``loss 2.0%`` (``loss --`` before it is measured)."""
    return "loss --" if row.loss is None else f"loss {row.loss * 100:.1f}%"


def rtt_scale(values: Sequence[float]) -> float:
    """The top of the RTT plot in ms: a round number at or above every sample."""
    top = max(values, default=0.0)
    return float(next((s for s in SCALES if s >= top), SCALES[-1]))


def _loss_color(loss: float | None) -> tuple[int, int, int]:
    value = loss or 0.0
    return GOOD if value < 0.02 else WARN if value < 0.08 else BAD


def _plot(surface: pygame.Surface, rect: pygame.Rect, values: Sequence[float],
          color: tuple[int, int, int], fonts: Fonts) -> None:
    pygame.draw.rect(surface, PLOT_BG, rect)
    pygame.draw.line(surface, PLOT_GRID, rect.topleft, (rect.right - 1, rect.top))
    pygame.draw.line(surface, PLOT_GRID, (rect.left, rect.centery), (rect.right - 1, rect.centery))
    top = rtt_scale(values)
    blit_text(surface, fonts.tiny, f"{top:g} ms", (rect.right + 5, rect.top - 2), DIM)
    blit_text(surface, fonts.tiny, "0", (rect.right + 5, rect.bottom + 2), DIM,
              anchor="bottomleft")
    if len(values) < 2:
        return
    step = (rect.width - 1) / (len(values) - 1)
    points = [(rect.left + i * step, rect.bottom - 1 - min(v, top) / top * (rect.height - 2))
              for i, v in enumerate(values)]
    pygame.draw.lines(surface, color, False, points, 2)


def plot_rect(pos: tuple[int, int], width: int, index: int) -> pygame.Rect:
    """Where the RTT plot of the ``index``-th peer goes in a panel drawn at ``pos``; its scale
    labels sit in the 50 pixels right of it."""
    return pygame.Rect(pos[0] + 10, pos[1] + HEADER_H + index * ROW_H + 48, width - 70, 24)


def draw_net_graph(surface: pygame.Surface, rows: Sequence[NetRow], fonts: Fonts,
                   pos: tuple[int, int], width: int = 280) -> pygame.Rect:
    """Draw the panel at ``pos``: a header, then one block per peer. Returns the area drawn."""
    height = HEADER_H + max(1, len(rows)) * ROW_H
    panel = pygame.Surface((width, height), pygame.SRCALPHA)
    panel.fill(PANEL)
    surface.blit(panel, pos)
    x, y = pos[0] + 10, pos[1] + 6
    right = pos[0] + width - 10
    blit_text(surface, fonts.small, "NET GRAPH (F3)", (x, y), TEXT)
    blit_text(surface, fonts.tiny, "in: received, out: sent; plot: rtt", (x, y + 17), DIM)
    y = pos[1] + HEADER_H
    if not rows:
        blit_text(surface, fonts.small, "no peers connected", (x, y + 4), DIM)
    for i, row in enumerate(rows):
        pygame.draw.rect(surface, row.color, pygame.Rect(x, y + 2, 10, 10), border_radius=2)
        blit_text(surface, fonts.small, row.name[:16], (x + 16, y), TEXT)
        blit_text(surface, fonts.small, loss_text(row), (right, y), _loss_color(row.loss),
                  anchor="topright")
        times, rates = stat_lines(row)
        blit_text(surface, fonts.tiny, times, (x, y + 17), TEXT)
        blit_text(surface, fonts.tiny, rates, (x, y + 32), TEXT)
        blit_text(surface, fonts.tiny, path_text(row), (right, y + 32),
                  WARN if row.path == "relay" else DIM, anchor="topright")
        _plot(surface, plot_rect(pos, width, i), row.rtt_history, row.color, fonts)
        y += ROW_H
    return pygame.Rect(pos, (width, height))
