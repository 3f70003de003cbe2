"""Game rules of Squares: pure data and functions, no pygame and no netplay.

The arena is a rectangle with a few fixed walls. Every player moves a coloured square and shoots
"tag" bolts in the direction it last moved. Each peer simulates only its own player
(``World.local``) and learns the others' positions from their state snapshots. Everything that
must happen exactly once travels as a reliable event, and exactly one peer decides it:

``shot``     the shooter announces a bolt; every peer flies it locally.
``hit``      the *victim* decides it was tagged (it knows its own position exactly) and tells
             everyone; the shooter scores a point, the victim respawns after RESPAWN_TIME
             (every peer counts it down, and keeps the victim tagged until then).
``pickup``   the *host* spawns a gem and announces it.
``claim``    a player touching a gem asks the host for it.
``taken``    the host grants the gem to the first claimant; the taker scores a point.
``pickups``  the host's full list of gems: sent to newcomers, and by a new host after migration.
``chat``     a line of text for everyone's message area.

So gems are owned by the host: when the host leaves, the new host announces its list and keeps
spawning (a peer that hears the new host before it hears of the host change keeps those
announcements until it does). Each player owns its own score and publishes it in its snapshot.

:func:`step` advances the world by ``dt`` for the given inputs and :func:`apply_event` applies an
event from a peer; both mutate the world for local effects and return :class:`Outgoing` messages
for the network. Scores, names and colours are plain data, so tests drive everything directly.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .controls import DOWN, FIRE, LEFT, RIGHT, UP

__all__ = [
    "ARENA_H",
    "ARENA_W",
    "WALLS",
    "Bullet",
    "Outgoing",
    "Pickup",
    "Player",
    "Rect",
    "World",
    "add_player",
    "apply_event",
    "apply_remote_state",
    "lerp_snapshot",
    "local_state",
    "remove_player",
    "set_host",
    "step",
]

logger = logging.getLogger(__name__)

ARENA_W = 760.0
ARENA_H = 600.0
PLAYER_SIZE = 26.0
PLAYER_SPEED = 230.0
BULLET_SPEED = 560.0
BULLET_TTL = 1.1
BULLET_RADIUS = 5.0
FIRE_COOLDOWN = 0.35
RESPAWN_TIME = 1.5
SPAWN_SHIELD = 1.2
PICKUP_RADIUS = 10.0
PICKUP_EVERY = 2.5
MAX_PICKUPS = 4
CLAIM_RETRY = 0.5
MESSAGE_TIME = 5.0
EARLY_KEPT = 8
"""Gem announcements kept per peer that is not the host (yet); see ``World.early``."""

PALETTE: tuple[tuple[int, int, int], ...] = (
    (237, 85, 101),   # red
    (72, 207, 173),   # mint
    (93, 156, 236),   # blue
    (255, 206, 84),   # yellow
    (172, 146, 236),  # lavender
    (252, 110, 81),   # orange
    (160, 212, 104),  # green
    (236, 135, 192),  # pink
)


@dataclass(frozen=True)
class Rect:
    """An axis-aligned wall: left, top, width, height in arena units."""

    x: float
    y: float
    w: float
    h: float

    def contains(self, px: float, py: float, margin: float = 0.0) -> bool:
        """Whether the point lies inside the rectangle grown by ``margin``."""
        return (self.x - margin <= px <= self.x + self.w + margin
                and self.y - margin <= py <= self.y + self.h + margin)


WALLS: tuple[Rect, ...] = (
    Rect(170, 130, 120, 24),
    Rect(470, 130, 120, 24),
    Rect(170, 446, 120, 24),
    Rect(470, 446, 120, 24),
    Rect(362, 250, 36, 100),
    Rect(80, 280, 24, 40),
    Rect(656, 280, 24, 40),
)


@dataclass
class Player:
    """One avatar. Remote players are overwritten from snapshots; the local one is simulated."""

    id: str
    name: str
    color: tuple[int, int, int]
    x: float = ARENA_W / 2
    y: float = ARENA_H / 2
    aim_x: float = 1.0
    aim_y: float = 0.0
    score: int = 0
    alive: bool = True
    respawn_in: float = 0.0
    shield: float = 0.0
    cooldown: float = 0.0
    tags: int = 0
    """Times this player was tagged (local bookkeeping for the scoreboard)."""
    tagged_by: str = ""
    """Who tagged this player last (a peer id), for "You were tagged by ..."."""
    tagged_at: tuple[float, float] | None = None
    """Where this player was tagged last, where its ghost shows until it respawns."""


@dataclass
class Bullet:
    """A tag bolt in flight, flown by every peer from the shooter's ``shot`` event."""

    id: str
    owner: str
    x: float
    y: float
    vx: float
    vy: float
    ttl: float = BULLET_TTL


@dataclass
class Pickup:
    """A gem spawned by the host. ``claimed_at`` throttles this peer's claims."""

    id: str
    x: float
    y: float
    claimed_at: float = -1e9


@dataclass(frozen=True)
class Outgoing:
    """A reliable event to send: ``to`` is a peer id, or None for everyone."""

    event: dict[str, Any]
    to: str | None = None


@dataclass
class World:
    """Everything one peer knows about the match."""

    me: str
    host_id: str
    rng: random.Random = field(default_factory=random.Random)
    players: dict[str, Player] = field(default_factory=dict)
    bullets: dict[str, Bullet] = field(default_factory=dict)
    pickups: dict[str, Pickup] = field(default_factory=dict)
    messages: list[tuple[float, str]] = field(default_factory=list)
    splats: list[tuple[float, float, float, tuple[int, int, int]]] = field(default_factory=list)
    """(time, x, y, colour) where a player was tagged, for a short effect."""
    time: float = 0.0
    next_pickup_in: float = 1.0
    serial: int = 0
    early: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Gem announcements from a peer that is not the host here yet, per sender: the new host
    may announce before the lobby's host change reaches this peer; they apply if it takes over."""
    gems_spawned: Counter[str] = field(default_factory=Counter)
    """Gems spawned by each host as this peer saw them: its own spawns while hosting, and the
    ``pickup`` announcements it accepted from the host (so a new host's gems show up here)."""

    @property
    def is_host(self) -> bool:
        """Whether this peer owns the gems."""
        return self.host_id == self.me

    @property
    def local(self) -> Player | None:
        """This peer's own player, if added."""
        return self.players.get(self.me)

    def new_id(self) -> str:
        """An id unique across peers and hosts: ``<peer id>:<serial>``."""
        self.serial += 1
        return f"{self.me}:{self.serial}"

    def say(self, text: str) -> None:
        """Add a message line for the screen (kept for MESSAGE_TIME seconds)."""
        logger.info("%s", text)
        self.messages.append((self.time, text))

    def name_of(self, peer_id: str) -> str:
        """Display name of a peer (its id when unknown)."""
        player = self.players.get(peer_id)
        return player.name if player else peer_id


# --- geometry ---------------------------------------------------------------------------------


def _blocked(x: float, y: float, half: float) -> bool:
    """Whether a square of half-size ``half`` at (x, y) overlaps a wall or leaves the arena."""
    if x < half or y < half or x > ARENA_W - half or y > ARENA_H - half:
        return True
    return any(wall.contains(x, y, half) for wall in WALLS)


def free_spot(rng: random.Random, margin: float = PLAYER_SIZE) -> tuple[float, float]:
    """A random point at least ``margin`` from the arena edge and from every wall."""
    for _ in range(200):
        x = rng.uniform(margin, ARENA_W - margin)
        y = rng.uniform(margin, ARENA_H - margin)
        if not _blocked(x, y, margin):
            return x, y
    return ARENA_W / 2, 40.0


def _direction(controls: int) -> tuple[float, float]:
    dx = (1 if controls & RIGHT else 0) - (1 if controls & LEFT else 0)
    dy = (1 if controls & DOWN else 0) - (1 if controls & UP else 0)
    if dx and dy:
        return dx / math.sqrt(2), dy / math.sqrt(2)
    return float(dx), float(dy)


# --- membership -------------------------------------------------------------------------------


def add_player(world: World, peer_id: str, name: str, slot: int) -> Player:
    """Add (or rename) a player; ``slot`` (join order in the lobby) picks its colour."""
    player = world.players.get(peer_id)
    if player is None:
        player = Player(peer_id, name, PALETTE[slot % len(PALETTE)])
        # Remote players move to their real place with their first snapshot.
        player.x, player.y = free_spot(world.rng)
        if peer_id == world.me:
            player.shield = SPAWN_SHIELD
        world.players[peer_id] = player
    else:
        player.name = name
    return player


def remove_player(world: World, peer_id: str) -> None:
    """Forget a player that left; its bolts keep flying until they expire."""
    world.players.pop(peer_id, None)
    world.early.pop(peer_id, None)


def set_host(world: World, host_id: str) -> list[Outgoing]:
    """Record a new host. A peer that becomes host announces its gem list to everyone; any
    other peer applies the gem announcements the new host made before this change reached it."""
    if host_id == world.host_id:
        return []
    world.host_id = host_id
    early = world.early.pop(host_id, [])
    world.early.clear()
    if world.is_host:
        world.next_pickup_in = min(world.next_pickup_in, PICKUP_EVERY)
        return [Outgoing(_pickups_event(world))]
    for event in early:
        apply_event(world, host_id, event)
    return []


# --- snapshots --------------------------------------------------------------------------------


def local_state(world: World) -> dict[str, Any]:
    """The snapshot this peer broadcasts: its own player's position, aim, score and status."""
    me = world.local
    if me is None:
        return {}
    return {
        "x": round(me.x, 1), "y": round(me.y, 1),
        "ax": round(me.aim_x, 2), "ay": round(me.aim_y, 2),
        "s": me.score, "al": 1 if me.alive else 0, "sh": 1 if me.shield > 0 else 0,
    }


_SMOOTH = ("x", "y", "ax", "ay")


def lerp_snapshot(a: Any, b: Any, t: float) -> Any:
    """Blend two snapshots of a player for rendering (netplay's ``interpolate`` hook).

    Position and aim move smoothly (``t > 1`` extrapolates); score, alive and shield come from
    the nearer snapshot. Across a tag or a respawn (``al`` differs) the square jumps instead of
    sliding through the arena.
    """
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return b
    out = dict(a if t < 0.5 else b)
    if a.get("al") == b.get("al"):
        for key in _SMOOTH:
            va, vb = a.get(key), b.get(key)
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
                out[key] = va + (vb - va) * t
    return out


def apply_remote_state(world: World, peer_id: str, state: Mapping[str, Any]) -> None:
    """Copy a (possibly interpolated) snapshot into a remote player; ignores bad fields."""
    player = world.players.get(peer_id)
    if player is None or peer_id == world.me:
        return
    try:
        player.x = float(state["x"])
        player.y = float(state["y"])
        player.aim_x = float(state.get("ax", player.aim_x))
        player.aim_y = float(state.get("ay", player.aim_y))
        player.score = round(float(state.get("s", player.score)))
        alive = bool(round(float(state.get("al", 1))))
        # A "hit" event may arrive before the snapshots that show the tag: the player stays
        # tagged for its respawn countdown, whatever the (older) snapshots still say.
        player.alive = alive and player.respawn_in <= 0
        if player.alive:
            player.tagged_at = None
        player.shield = 1.0 if round(float(state.get("sh", 0))) else 0.0
    except (KeyError, TypeError, ValueError):
        logger.debug("ignoring malformed state from %s: %r", peer_id, state)


# --- simulation -------------------------------------------------------------------------------


def _move(player: Player, controls: int, dt: float) -> None:
    dx, dy = _direction(controls)
    if dx or dy:
        player.aim_x, player.aim_y = dx, dy
    half = PLAYER_SIZE / 2
    # Axis by axis, so a player slides along walls instead of sticking to them.
    nx = player.x + dx * PLAYER_SPEED * dt
    if not _blocked(nx, player.y, half):
        player.x = nx
    ny = player.y + dy * PLAYER_SPEED * dt
    if not _blocked(player.x, ny, half):
        player.y = ny


def _fire(world: World, player: Player) -> Outgoing:
    bullet_id = world.new_id()
    offset = PLAYER_SIZE / 2 + BULLET_RADIUS + 1
    bullet = Bullet(bullet_id, player.id, player.x + player.aim_x * offset,
                    player.y + player.aim_y * offset,
                    player.aim_x * BULLET_SPEED, player.aim_y * BULLET_SPEED)
    world.bullets[bullet_id] = bullet
    player.cooldown = FIRE_COOLDOWN
    return Outgoing({"t": "shot", "id": bullet_id, "x": round(bullet.x, 1),
                     "y": round(bullet.y, 1), "vx": round(bullet.vx, 1),
                     "vy": round(bullet.vy, 1)})


def _simulate_player(world: World, player: Player, controls: int, dt: float) -> list[Outgoing]:
    out: list[Outgoing] = []
    player.cooldown = max(0.0, player.cooldown - dt)
    player.shield = max(0.0, player.shield - dt)
    if not player.alive:
        player.respawn_in -= dt
        if player.respawn_in <= 0:
            player.alive = True
            player.shield = SPAWN_SHIELD
        return out
    _move(player, controls, dt)
    if controls & FIRE and player.cooldown <= 0:
        out.append(_fire(world, player))
    return out


def _fly_bullets(world: World, simulated: Iterable[str], dt: float) -> list[Outgoing]:
    """Move bolts; a bolt touching a player simulated here tags it (the victim decides)."""
    out: list[Outgoing] = []
    targets = [world.players[pid] for pid in simulated if pid in world.players]
    reach = PLAYER_SIZE / 2 + BULLET_RADIUS
    for bullet in list(world.bullets.values()):
        bullet.x += bullet.vx * dt
        bullet.y += bullet.vy * dt
        bullet.ttl -= dt
        if bullet.ttl <= 0 or _blocked(bullet.x, bullet.y, BULLET_RADIUS):
            del world.bullets[bullet.id]
            continue
        for victim in targets:
            if (victim.id != bullet.owner and victim.alive and victim.shield <= 0
                    and abs(victim.x - bullet.x) <= reach and abs(victim.y - bullet.y) <= reach):
                del world.bullets[bullet.id]
                _tagged(world, victim, bullet.owner)
                out.append(Outgoing({"t": "hit", "by": bullet.owner, "bullet": bullet.id,
                                     "victim": victim.id}))
                break
    return out


def _tagged(world: World, victim: Player, shooter_id: str) -> None:
    world.splats.append((world.time, victim.x, victim.y, victim.color))
    victim.alive = False
    victim.respawn_in = RESPAWN_TIME
    victim.tags += 1
    victim.tagged_by = shooter_id
    victim.tagged_at = (victim.x, victim.y)
    if victim.id == world.me:
        # Move to the respawn spot at once: while dead we are not drawn, so the others'
        # interpolation never slides the square across the arena.
        victim.x, victim.y = free_spot(world.rng)
    shooter = world.players.get(shooter_id)
    if shooter is not None and shooter.id == world.me:
        shooter.score += 1
    world.say(f"{world.name_of(shooter_id)} tagged {victim.name}")


def _touch_pickups(world: World, player: Player) -> list[Outgoing]:
    out: list[Outgoing] = []
    if not player.alive:
        return out
    reach = PLAYER_SIZE / 2 + PICKUP_RADIUS
    for pickup in list(world.pickups.values()):
        if abs(player.x - pickup.x) > reach or abs(player.y - pickup.y) > reach:
            continue
        if world.is_host:
            out.extend(_grant(world, pickup.id, player.id))
        elif world.time - pickup.claimed_at >= CLAIM_RETRY:
            pickup.claimed_at = world.time
            out.append(Outgoing({"t": "claim", "id": pickup.id}, to=world.host_id))
    return out


def _grant(world: World, pickup_id: str, taker: str) -> list[Outgoing]:
    """Host only: give a gem to ``taker`` (first claim wins) and tell everyone."""
    if world.pickups.pop(pickup_id, None) is None:
        return []
    _taken(world, taker)
    return [Outgoing({"t": "taken", "id": pickup_id, "by": taker})]


def _taken(world: World, taker: str) -> None:
    if taker == world.me and world.local is not None:
        world.local.score += 1


def _spawn_pickups(world: World, dt: float) -> list[Outgoing]:
    world.next_pickup_in -= dt
    if world.next_pickup_in > 0:
        return []
    world.next_pickup_in = PICKUP_EVERY
    if len(world.pickups) >= MAX_PICKUPS:
        return []
    x, y = free_spot(world.rng, margin=PICKUP_RADIUS * 3)
    pickup = Pickup(world.new_id(), x, y)
    world.pickups[pickup.id] = pickup
    world.gems_spawned[world.me] += 1
    return [Outgoing({"t": "pickup", "id": pickup.id, "x": round(x, 1), "y": round(y, 1)})]


SPLAT_TIME = 0.6


def _expire_messages(world: World) -> None:
    world.messages = [(t, m) for t, m in world.messages if world.time - t < MESSAGE_TIME][-6:]
    world.splats = [s for s in world.splats if world.time - s[0] < SPLAT_TIME]


def step(world: World, inputs: Mapping[str, int], dt: float) -> list[Outgoing]:
    """Advance the world by ``dt`` seconds.

    ``inputs`` maps each player simulated on this peer (normally just ``world.me``) to its
    control bits. Returns the reliable events this step caused, for the network.
    """
    world.time += dt
    out: list[Outgoing] = []
    for peer_id, controls in inputs.items():
        player = world.players.get(peer_id)
        if player is not None:
            out.extend(_simulate_player(world, player, controls, dt))
    for player in world.players.values():
        if player.id not in inputs and not player.alive:
            player.respawn_in = max(0.0, player.respawn_in - dt)  # the countdown shown
    out.extend(_fly_bullets(world, inputs.keys(), dt))
    for peer_id in inputs:
        player = world.players.get(peer_id)
        if player is not None:
            out.extend(_touch_pickups(world, player))
    if world.is_host:
        out.extend(_spawn_pickups(world, dt))
    _expire_messages(world)
    return out


# --- events from peers ------------------------------------------------------------------------


def _pickups_event(world: World) -> dict[str, Any]:
    return {"t": "pickups",
            "items": [[p.id, round(p.x, 1), round(p.y, 1)] for p in world.pickups.values()]}


def welcome(world: World, peer_id: str) -> list[Outgoing]:
    """Host only: what a newcomer needs to see (the current gems)."""
    if not world.is_host:
        return []
    return [Outgoing(_pickups_event(world), to=peer_id)]


def chat(text: str, to: str | None = None) -> Outgoing:
    """A chat line for one peer, or everyone."""
    return Outgoing({"t": "chat", "text": text[:40]}, to=to)


def apply_event(world: World, sender: str, event: Any) -> list[Outgoing]:
    """Apply a reliable event from ``sender``; returns any replies. Malformed events are ignored."""
    try:
        return _apply(world, sender, event)
    except (KeyError, TypeError, ValueError, AttributeError):
        logger.warning("ignoring malformed event from %s: %r", sender, event)
        return []


def _apply(world: World, sender: str, event: dict[str, Any]) -> list[Outgoing]:
    kind = event["t"]
    if kind == "shot":
        bullet_id = str(event["id"])
        world.bullets[bullet_id] = Bullet(bullet_id, sender, float(event["x"]), float(event["y"]),
                                          float(event["vx"]), float(event["vy"]))
    elif kind == "hit":
        world.bullets.pop(str(event["bullet"]), None)
        victim = world.players.get(sender)
        if victim is not None:
            _tagged(world, victim, str(event["by"]))
    elif kind in ("pickup", "pickups") and sender != world.host_id:
        if sender != world.me and sender in world.players:
            kept = world.early.setdefault(sender, [])
            kept.append(event)
            del kept[:-EARLY_KEPT]
    elif kind == "pickup":
        pickup_id = str(event["id"])
        world.pickups[pickup_id] = Pickup(pickup_id, float(event["x"]), float(event["y"]))
        world.gems_spawned[sender] += 1
    elif kind == "pickups":
        world.pickups = {str(i): Pickup(str(i), float(x), float(y))
                         for i, x, y in event["items"]}
    elif kind == "claim":
        if world.is_host:
            return _grant(world, str(event["id"]), sender)
    elif kind == "chat":
        world.say(f"{world.name_of(sender)}: {str(event['text'])[:40]}")
    elif kind == "taken":
        world.pickups.pop(str(event["id"]), None)
        _taken(world, str(event["by"]))
    else:
        logger.debug("unknown event %r from %s", kind, sender)
    return []
