"""Abstract controls: keys become one byte of bit flags (matchbox ``box_game.rs`` style).

The game, the bots and the network only ever see these bits, never raw pygame events, so a bot
and a keyboard player are indistinguishable to :func:`game.step` (solarwolf ``input.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DOWN", "FIRE", "KEYMAP", "LEFT", "RIGHT", "UP", "describe", "from_keys"]

UP = 1 << 0
DOWN = 1 << 1
LEFT = 1 << 2
RIGHT = 1 << 3
FIRE = 1 << 4

_NAMES = {UP: "up", DOWN: "down", LEFT: "left", RIGHT: "right", FIRE: "fire"}


def _keymap() -> dict[int, int]:
    import pygame  # only the keyboard mapping needs pygame; bots and tests do not

    return {
        pygame.K_UP: UP, pygame.K_w: UP,
        pygame.K_DOWN: DOWN, pygame.K_s: DOWN,
        pygame.K_LEFT: LEFT, pygame.K_a: LEFT,
        pygame.K_RIGHT: RIGHT, pygame.K_d: RIGHT,
        pygame.K_SPACE: FIRE, pygame.K_RCTRL: FIRE, pygame.K_LCTRL: FIRE,
    }


KEYMAP: dict[int, int] = {}
"""pygame key code -> control bit, filled on first use of :func:`from_keys`."""


def from_keys(pressed: Sequence[bool]) -> int:
    """Control bits from ``pygame.key.get_pressed()``."""
    if not KEYMAP:
        KEYMAP.update(_keymap())
    bits = 0
    for key, bit in KEYMAP.items():
        if pressed[key]:
            bits |= bit
    return bits


def describe(bits: int) -> str:
    """Human-readable form of control bits, e.g. ``"up+fire"`` (for logs)."""
    return "+".join(name for bit, name in _NAMES.items() if bits & bit) or "none"
