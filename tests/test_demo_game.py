"""Pure rule tests of the demo game (``netplay_demo.game``): no pygame window, no network."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import netplay_demo

from netplay_demo import game
from netplay_demo.bots import Bot
from netplay_demo.controls import DOWN, FIRE, LEFT, RIGHT, UP, describe
from netplay_demo.game import World, add_player, apply_event, local_state, step


def make_world(me: str = "a", host: str = "a", others: tuple[str, ...] = ("b",)) -> World:
    world = World(me=me, host_id=host, rng=random.Random(1))
    for slot, peer in enumerate((me, *others)):
        add_player(world, peer, peer.upper(), slot)
    return world


def place(world: World, peer: str, x: float, y: float) -> None:
    world.players[peer].x, world.players[peer].y = x, y
    world.players[peer].shield = 0.0


def test_controls_move_the_local_player_and_walls_stop_it() -> None:
    world = make_world()
    place(world, "a", 100, 60)
    step(world, {"a": RIGHT | DOWN}, 0.1)
    me = world.players["a"]
    assert me.x > 100 and me.y > 60
    assert (me.aim_x, me.aim_y) != (1.0, 0.0)
    # Walk into the left arena edge for a long time: the square stops at the edge.
    for _ in range(100):
        step(world, {"a": LEFT}, 0.05)
    half = game.PLAYER_SIZE / 2
    assert half <= me.x < half + game.PLAYER_SPEED * 0.05


def test_fire_announces_a_shot_with_cooldown() -> None:
    world = make_world()
    place(world, "a", 40, 40)
    out = step(world, {"a": FIRE}, 0.016)
    shots = [o.event for o in out if o.event["t"] == "shot"]
    assert len(shots) == 1 and shots[0]["vx"] > 0 and out[0].to is None
    assert len(world.bullets) == 1
    # Holding fire does not fire again before the cooldown.
    again = step(world, {"a": FIRE}, 0.016)
    assert not [o for o in again if o.event["t"] == "shot"]


def test_victim_decides_the_hit_and_the_shooter_scores() -> None:
    shooter = make_world("a", "a", ("b",))
    victim = make_world("b", "a", ("a",))
    for world in (shooter, victim):
        place(world, "a", 40, 40)
        place(world, "b", 140, 40)
    shot = [o.event for o in step(shooter, {"a": RIGHT | FIRE}, 0.016)
            if o.event["t"] == "shot"][0]
    apply_event(victim, "a", shot)
    hits = []
    for _ in range(30):
        hits += [o.event for o in step(victim, {"b": 0}, 0.016) if o.event["t"] == "hit"]
    assert len(hits) == 1 and hits[0]["by"] == "a"
    assert not victim.players["b"].alive
    apply_event(shooter, "b", hits[0])
    assert shooter.players["a"].score == 1
    assert shooter.players["b"].tags == 1
    assert shot["id"] not in shooter.bullets
    # The victim respawns after a while with a spawn shield.
    for _ in range(200):
        step(victim, {"b": 0}, 0.016)
    assert victim.players["b"].alive and victim.players["b"].score == 0


def test_shield_and_own_bolts_do_not_tag() -> None:
    world = make_world("b", "a", ("a",))
    place(world, "b", 200, 40)
    world.players["b"].shield = 5.0
    apply_event(world, "a", {"t": "shot", "id": "a:1", "x": 180, "y": 40, "vx": 500, "vy": 0})
    apply_event(world, "b", {"t": "shot", "id": "b:1", "x": 190, "y": 40, "vx": 500, "vy": 0})
    out = [o for _ in range(20) for o in step(world, {"b": 0}, 0.016)]
    assert not [o for o in out if o.event["t"] == "hit"]
    assert world.players["b"].alive


def test_host_spawns_gems_and_grants_the_first_claim_only() -> None:
    host = make_world("a", "a", ("b", "c"))
    spawned = [o.event for _ in range(200) for o in step(host, {"a": 0}, 0.05)
               if o.event["t"] == "pickup"]
    assert 1 <= len(spawned) <= game.MAX_PICKUPS == len(host.pickups)
    gem = spawned[0]
    first = apply_event(host, "b", {"t": "claim", "id": gem["id"]})
    second = apply_event(host, "c", {"t": "claim", "id": gem["id"]})
    assert [o.event for o in first] == [{"t": "taken", "id": gem["id"], "by": "b"}]
    assert second == []
    # The taker counts its own point when the host's announcement arrives.
    taker = make_world("b", "a", ("a", "c"))
    apply_event(taker, "a", gem)
    assert gem["id"] in taker.pickups
    apply_event(taker, "a", first[0].event)
    assert gem["id"] not in taker.pickups and taker.players["b"].score == 1


def test_non_host_claims_a_touched_gem_from_the_host_and_retries() -> None:
    world = make_world("b", "a", ("a",))
    apply_event(world, "a", {"t": "pickup", "id": "a:7", "x": 300, "y": 40})
    place(world, "b", 300, 40)
    claims = [o for o in step(world, {"b": 0}, 0.016) if o.event["t"] == "claim"]
    assert [(o.to, o.event) for o in claims] == [("a", {"t": "claim", "id": "a:7"})]
    assert not [o for o in step(world, {"b": 0}, 0.016) if o.event["t"] == "claim"]
    retried = [o for _ in range(40) for o in step(world, {"b": 0}, 0.016)
               if o.event["t"] == "claim"]
    assert retried and retried[0].to == "a"


def test_gems_from_a_non_host_are_ignored_and_host_migration_hands_them_over() -> None:
    world = make_world("b", "a", ("a", "c"))
    apply_event(world, "c", {"t": "pickup", "id": "c:1", "x": 300, "y": 40})
    assert world.pickups == {}
    apply_event(world, "a", {"t": "pickup", "id": "a:1", "x": 300, "y": 40})
    # The host leaves; this peer becomes host and announces the gems it knows.
    game.remove_player(world, "a")
    out = game.set_host(world, "b")
    assert world.is_host
    assert [o.event for o in out] == [{"t": "pickups", "items": [["a:1", 300.0, 40.0]]}]
    spawned = [o for _ in range(100) for o in step(world, {"b": 0}, 0.05)
               if o.event["t"] == "pickup"]
    assert spawned and all(o.event["id"].startswith("b:") for o in spawned)
    assert world.gems_spawned == {"a": 1, "b": len(spawned)}
    # Another peer accepts the new host's list.
    other = make_world("c", "b", ("b",))
    apply_event(other, "b", out[0].event)
    assert list(other.pickups) == ["a:1"]


def test_the_new_hosts_gems_count_even_when_they_arrive_before_the_host_change() -> None:
    # Peer b still thinks a is host when c's announcements (c took over) arrive.
    world = make_world("b", "a", ("a", "c"))
    apply_event(world, "a", {"t": "pickup", "id": "a:1", "x": 300, "y": 40})
    apply_event(world, "c", {"t": "pickups", "items": [["a:1", 300, 40], ["c:1", 90, 90]]})
    apply_event(world, "c", {"t": "pickup", "id": "c:2", "x": 500, "y": 500})
    apply_event(world, "d", {"t": "pickup", "id": "d:1", "x": 10, "y": 10})  # not a player
    assert list(world.pickups) == ["a:1"]
    game.remove_player(world, "a")
    assert game.set_host(world, "c") == []
    assert list(world.pickups) == ["a:1", "c:1", "c:2"]
    assert world.gems_spawned == {"a": 1, "c": 1}
    assert world.early == {}
    # Later announcements from the new host apply at once.
    apply_event(world, "c", {"t": "pickup", "id": "c:3", "x": 500, "y": 90})
    assert "c:3" in world.pickups


def test_snapshots_round_trip_and_malformed_input_is_ignored() -> None:
    a = make_world("a", "a", ("b",))
    b = make_world("b", "a", ("a",))
    place(a, "a", 123.4, 321.0)
    a.players["a"].score = 5
    game.apply_remote_state(b, "a", local_state(a))
    remote = b.players["a"]
    assert (remote.x, remote.y, remote.score, remote.alive) == (123.4, 321.0, 5, True)
    game.apply_remote_state(b, "a", {"x": "nope"})
    assert remote.x == 123.4
    assert apply_event(b, "a", {"no": "type"}) == []
    assert apply_event(b, "a", "garbage") == []
    assert apply_event(b, "a", {"t": "shot", "id": "x"}) == []


def test_messages_expire() -> None:
    world = make_world()
    world.say("hello")
    assert [m for _, m in world.messages] == ["hello"]
    for _ in range(int(game.MESSAGE_TIME / 0.1) + 2):
        step(world, {}, 0.1)
    assert world.messages == []


def test_a_bot_plays_collects_gems_and_tags() -> None:
    world = make_world("a", "a", ())
    bot = Bot(rng=random.Random(3))
    for _ in range(60 * 30):
        step(world, {"a": bot.controls(world, 1 / 60)}, 1 / 60)
    assert world.players["a"].score >= 2
    # Two bots in one world eventually tag each other.
    duel = make_world("a", "a", ("b",))
    bots = {"a": Bot(rng=random.Random(4)), "b": Bot(rng=random.Random(5))}
    tags = 0
    for _ in range(60 * 40):
        for peer, brain in bots.items():
            duel.me = peer
            out = step(duel, {peer: brain.controls(duel, 1 / 60)}, 1 / 60)
            tags += sum(1 for o in out if o.event["t"] == "hit")
    assert tags >= 1


def test_describe_controls() -> None:
    assert describe(UP | FIRE) == "up+fire"
    assert describe(0) == "none"
    assert describe(DOWN) == "down"


def test_snapshot_blending_moves_smoothly_but_jumps_across_a_tag() -> None:
    a = {"x": 100.0, "y": 50.0, "ax": 1.0, "ay": 0.0, "s": 2, "al": 1, "sh": 0}
    b = {"x": 120.0, "y": 50.0, "ax": 0.0, "ay": 1.0, "s": 3, "al": 1, "sh": 0}
    mid = game.lerp_snapshot(a, b, 0.25)
    assert (mid["x"], mid["ay"], mid["s"]) == (105.0, 0.25, 2)
    assert game.lerp_snapshot(a, b, 0.75)["s"] == 3
    assert game.lerp_snapshot(a, b, 1.5)["x"] == 130.0  # extrapolation
    tagged = dict(b, x=600.0, y=400.0, al=0)
    assert game.lerp_snapshot(a, tagged, 0.4) == a
    assert game.lerp_snapshot(a, tagged, 0.6) == tagged
    assert game.lerp_snapshot(None, b, 0.5) == b


def imported_packages(module: Path) -> set[str]:
    """Top-level packages a module imports (relative imports as ``.name``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or "").split(".")[0])
    return found


def test_only_net_talks_to_netplay_and_the_rules_need_no_pygame() -> None:
    package = Path(netplay_demo.__file__).parent
    imports = {path.stem: imported_packages(path) for path in package.glob("*.py")}
    assert {name for name, found in imports.items() if "netplay" in found} == {"net"}
    for pure in ("game", "bots"):
        assert not imports[pure] & {"pygame", "netplay", "signaling", ".net"}, pure
    assert imports["controls"] <= {"__future__", "collections", "pygame"}  # keys to bits only
    assert ".net" not in imports["render"] and ".match" not in imports["render"]
