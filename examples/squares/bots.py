"""Computer players: turn what a peer sees of the world into control bits.

A bot is only an input source: it produces the same bits a keyboard would, and the match treats
it like any other local player. It goes for the nearest gem, or hunts the nearest visible player,
lines up on one axis with its target and fires along the other, and wanders when stuck.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .controls import DOWN, FIRE, LEFT, RIGHT, UP
from .game import World

__all__ = ["Bot"]

SPRAY_PER_SECOND = 0.8
"""How often a bot fires without a target lined up."""
ALIGN = 10.0
"""How close (arena units) the bot gets to a target's row or column before shooting."""


@dataclass
class Bot:
    """The state a bot keeps between frames (its own random source and wander plan)."""

    rng: random.Random = field(default_factory=random.Random)
    wander: int = 0
    wander_left: float = 0.0
    last_pos: tuple[float, float] = (0.0, 0.0)
    stuck_for: float = 0.0
    chase_gems: bool = True
    plan_left: float = 0.0

    def controls(self, world: World, dt: float) -> int:
        """Control bits for ``world.me`` this frame."""
        me = world.local
        if me is None or not me.alive:
            return 0
        moved = abs(me.x - self.last_pos[0]) + abs(me.y - self.last_pos[1])
        self.last_pos = (me.x, me.y)
        self.stuck_for = self.stuck_for + dt if moved < 0.5 else 0.0
        if self.wander_left > 0 or self.stuck_for > 0.4:
            if self.wander_left <= 0:
                self.wander = self.rng.choice((UP, DOWN, LEFT, RIGHT, UP | LEFT, DOWN | RIGHT))
                self.wander_left = self.rng.uniform(0.3, 0.8)
                self.stuck_for = 0.0
            self.wander_left -= dt
            return self.wander
        self.plan_left -= dt
        if self.plan_left <= 0:
            self.chase_gems = self.rng.random() < 0.6
            self.plan_left = self.rng.uniform(1.0, 2.5)
        bits = self._hunt(world)
        if self.rng.random() < dt * SPRAY_PER_SECOND:
            bits |= FIRE  # a speculative shot now and then keeps the arena lively
        return bits

    def _hunt(self, world: World) -> int:
        me = world.local
        assert me is not None
        enemies = [p for p in world.players.values()
                   if p.id != me.id and p.alive and p.shield <= 0]
        enemy = min(enemies, key=lambda p: abs(p.x - me.x) + abs(p.y - me.y), default=None)
        gem = min(world.pickups.values(), key=lambda g: abs(g.x - me.x) + abs(g.y - me.y),
                  default=None)
        if enemy is not None:
            dx, dy = enemy.x - me.x, enemy.y - me.y
            if abs(dy) < ALIGN and abs(dx) < 420:
                return (RIGHT if dx > 0 else LEFT) | FIRE
            if abs(dx) < ALIGN and abs(dy) < 420:
                return (DOWN if dy > 0 else UP) | FIRE
        if gem is not None and (enemy is None or self.chase_gems):
            return _towards(me.x, me.y, gem.x, gem.y)
        if enemy is not None:
            # Line up on the nearer axis, then the shot above fires.
            dx, dy = enemy.x - me.x, enemy.y - me.y
            if abs(dx) < abs(dy):
                return RIGHT if dx > 0 else LEFT
            return DOWN if dy > 0 else UP
        return 0


def _towards(x: float, y: float, tx: float, ty: float) -> int:
    bits = 0
    if tx - x > 4:
        bits |= RIGHT
    elif x - tx > 4:
        bits |= LEFT
    if ty - y > 4:
        bits |= DOWN
    elif y - ty > 4:
        bits |= UP
    return bits
