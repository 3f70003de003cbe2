"""The look shared by every drawing module: colours, fonts and a text helper (pygame only)."""

from __future__ import annotations

import pygame

__all__ = [
    "ACCENT",
    "BACKGROUND",
    "BAD",
    "DIM",
    "GOOD",
    "PANEL",
    "TEXT",
    "WARN",
    "Fonts",
    "blit_text",
    "shade",
]

BACKGROUND = (17, 19, 27)
TEXT = (226, 230, 240)
DIM = (128, 136, 158)
ACCENT = (255, 206, 84)
GOOD = (120, 220, 140)
WARN = (255, 190, 90)
BAD = (240, 100, 100)
PANEL = (12, 14, 20, 205)


class Fonts:
    """The few fonts the demo uses (pygame's default font; needs ``pygame.font.init()``)."""

    def __init__(self) -> None:
        self.tiny = pygame.font.Font(None, 18)
        self.small = pygame.font.Font(None, 20)
        self.normal = pygame.font.Font(None, 26)
        self.large = pygame.font.Font(None, 40)
        self.huge = pygame.font.Font(None, 120)


def blit_text(surface: pygame.Surface, font: pygame.font.Font, text: str,
              pos: tuple[float, float], color: tuple[int, int, int] = TEXT,
              anchor: str = "topleft") -> pygame.Rect:
    """Draw ``text`` with its ``anchor`` point (a pygame.Rect attribute) at ``pos``; returns
    the area drawn."""
    image = font.render(text, True, color)
    rect = image.get_rect(**{anchor: (round(pos[0]), round(pos[1]))})
    surface.blit(image, rect)
    return rect


def shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """``color`` darkened (factor < 1) or brightened (> 1), clipped at 255."""
    return (min(255, round(color[0] * factor)), min(255, round(color[1] * factor)),
            min(255, round(color[2] * factor)))
