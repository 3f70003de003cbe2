"""Players behind real NATs (network namespaces, nftables, coturn) with default ICE settings.

Each test builds a topology with :mod:`netlab` (an "internet" with the lobby and coturn,
players behind cone or symmetric NAT routers, or on one LAN), runs every player as its own
process (``tests/nat_peer.py``) in its namespace, and checks which candidate pair ICE
selected, as ``PeerStats.candidate_pair`` reports it. Nothing pins ICE: host candidates come
from the players' interfaces, STUN and TURN (with short-lived credentials) from the lobby.
Formation times go to the test output (``-s``) as ``NAT formation`` lines.

Needs root, network namespaces and ``nft``/``turnserver``/``conntrack`` (``.ci/run`` installs
them); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netlab import NetLab, Player, check_pairs, start_match, unavailable

REASON = unavailable()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"NAT lab: {REASON}"),
              pytest.mark.timeout(120)]


def report_formation(label: str, connected: dict[str, dict[str, Any]]) -> None:
    slowest = max(r["seconds"] for r in connected.values())
    print(f"\nNAT formation {label}: {slowest:.2f} s (slowest player, host/join to all "
          f"peers connected)")


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., tuple[NetLab, str]]]:
    labs: list[NetLab] = []

    def build(players: dict[str, str], **servers: bool) -> tuple[NetLab, str]:
        lab = NetLab(players).__enter__()
        labs.append(lab)
        return lab, lab.start_servers(**servers)

    yield build
    for lab in labs:
        lab.close()


def test_netlab_nat_kinds_map_as_named(lab_factory: Any) -> None:
    lab, _ = lab_factory({"c": "cone", "s": "symmetric", "l": "lan"}, stun=False, turn=False)
    cone = lab.mapping("c")
    assert len(set(cone)) == 1 and cone[0][0] == "203.0.113.11", cone  # one mapping for all
    symmetric = lab.mapping("s")
    assert len(set(symmetric)) == 2, symmetric  # a new port for every destination
    assert {host for host, _ in symmetric} == {"203.0.113.12"}


def test_cone_nats_connect_directly_through_stun(lab_factory: Any) -> None:
    lab, lobby = lab_factory({"a": "cone", "b": "cone"})
    a, b = Player(lab, "a", lobby), Player(lab, "b", lobby)
    connected = start_match([a, b])
    for player in connected.values():
        (pair,) = player["pairs"].values()
        assert pair["kind"] in ("srflx", "prflx", "host") and not pair["relayed"], pair
    report_formation("cone-cone", connected)


def test_symmetric_nats_connect_through_turn(lab_factory: Any) -> None:
    lab, lobby = lab_factory({"a": "symmetric", "b": "symmetric"})
    a, b = Player(lab, "a", lobby), Player(lab, "b", lobby)
    connected = start_match([a, b])
    for player in connected.values():
        (pair,) = player["pairs"].values()
        assert pair["relayed"] and pair["kind"] == "relay", pair
    report_formation("symmetric-symmetric", connected)


def test_players_on_one_lan_use_host_candidates(lab_factory: Any) -> None:
    lab, lobby = lab_factory({"a": "lan", "b": "lan"})
    a, b = Player(lab, "a", lobby), Player(lab, "b", lobby)
    connected = start_match([a, b])
    for name, other in (("a", "b"), ("b", "a")):
        (pair,) = connected[name]["pairs"].values()
        assert pair["kind"] == "host", pair
        assert pair["remote"][0] == lab.players[other].address, pair
    report_formation("same LAN", connected)


def test_symmetric_nats_without_turn_fail_fast_saying_turn_is_needed(lab_factory: Any) -> None:
    lab, lobby = lab_factory({"a": "symmetric", "b": "symmetric"}, stun=False, turn=False)
    a, b = Player(lab, "a", lobby), Player(lab, "b", lobby)
    a.send(op="host")
    code = a.expect("lobby")["code"]
    b.send(op="join", code=code)
    b.expect("lobby")
    started = time.monotonic()
    a.send(op="wait", peers=1, timeout=11)
    for player, other in ((a, b), (b, a)):
        left = player.expect("left", timeout=20)
        assert left["peer"] == other.peer_id and left["reason"] == "connection_failed"
        assert "TURN server is needed" in left["detail"], left
    assert time.monotonic() - started < 15
    failed = a.expect("wait_failed", timeout=20)
    assert failed["error"].startswith("PeersNotConnected: 0 of 1 peer(s) connected")
    assert "TURN server is needed" in failed["error"]




def test_four_player_mesh_mixing_cone_symmetric_and_lan(lab_factory: Any) -> None:
    lab, lobby = lab_factory({"cone": "cone", "sym": "symmetric", "lan1": "lan",
                              "lan2": "lan"})
    players = [Player(lab, name, lobby) for name in lab.spec]
    connected = start_match(players)
    kinds = check_pairs(lab, players, connected)
    assert {kinds[("lan1", "lan2")], kinds[("cone", "sym")], kinds[("lan1", "sym")]} == {
        "host", "relay"}
    report_formation("4 players (cone, symmetric, 2 on one LAN)", connected)


def test_direct_paths_win_over_relays(lab_factory: Any) -> None:
    """With TURN available, cone-to-cone pairs are never relayed (NETPLAY_NAT_RUNS rounds,
    default 2; ``python -m bench --only nat`` runs 20)."""
    runs = int(os.environ.get("NETPLAY_NAT_RUNS", "2"))
    lab, lobby = lab_factory({"c1": "cone", "c2": "cone", "s1": "symmetric",
                              "s2": "symmetric"})
    players = [Player(lab, name, lobby) for name in lab.spec]
    times = []
    for _ in range(runs):
        connected = start_match(players)
        kinds = check_pairs(lab, players, connected)
        assert kinds[("c1", "c2")] != "relay" and kinds[("c2", "c1")] != "relay"
        times.append(max(r["seconds"] for r in connected.values()))
        for player in players:
            player.send(op="leave")
            player.expect("left_lobby")
    print(f"\nNAT formation 4 players (2 cone, 2 symmetric), {runs} runs: "
          f"{', '.join(f'{t:.2f}' for t in times)} s; no cone-cone pair relayed")


def received_seqs(player: Player, sender: str, count: int, timeout: float) -> list[int]:
    """The ``seq`` of every event ``player`` got from ``sender`` (reported so far and until
    ``count`` distinct ones arrived), in arrival order."""
    def seqs() -> list[int]:
        return [r["body"]["seq"] for r in player.seen
                if r["event"] == "message" and r["peer"] == sender]
    deadline = time.monotonic() + timeout
    while len(set(seqs())) < count:
        player.expect("message", timeout=max(deadline - time.monotonic(), 0.01),
                      where=lambda r: r["peer"] == sender)
    return seqs()


def test_nat_remap_mid_game_reconnects_and_delivers_every_event_once(
        lab_factory: Any) -> None:
    lab, lobby = lab_factory({"a": "cone", "b": "cone"})
    a, b = Player(lab, "a", lobby), Player(lab, "b", lobby)
    start_match([a, b])
    count = 200
    for player in (a, b):
        player.send(op="events", count=count, rate=50)  # 4 s of events each way
    a.expect("message", where=lambda r: r["body"]["seq"] >= 20)
    remapped = time.monotonic()
    lab.remap("a")  # a's router: new public address, every NAT mapping forgotten
    for player, other in ((a, b), (b, a)):
        left = player.expect("left", timeout=15)
        assert left["peer"] == other.peer_id and left["reason"] == "timed_out"
    for player, other in ((a, b), (b, a)):
        joined = player.expect("joined", timeout=20)
        assert joined["peer"] == other.peer_id
        assert joined["pair"]["kind"] in ("srflx", "prflx"), joined
    back = time.monotonic() - remapped
    # docs/nat.md: silence for disconnect_timeout (2.5 s) takes the link down, then a fresh
    # offer (through the lobby, itself reconnected) must open within connect_timeout (10 s).
    assert back < 2.5 + 10, back
    assert a.seen[-1]["pair"]["local"][0] == lab.players["a"].address
    for player, other in ((a, b), (b, a)):
        seqs = received_seqs(player, other.peer_id, count, timeout=30)
        assert seqs == list(range(count)), seqs  # every event once, in order
    print(f"\nNAT remap: link back {back:.2f} s after the mapping changed; "
          f"{count} events each way delivered exactly once")
