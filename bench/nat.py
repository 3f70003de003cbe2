"""Players behind real NATs: formation time per NAT kind, and how often a direct pair loses.

Builds the topologies of ``tests/netlab.py`` (network namespaces, nftables NAT routers, the
lobby and coturn in an "internet" namespace; needs root, ``nft``, ``conntrack`` and
``turnserver``) and runs ``tests/nat_peer.py`` players with netplay's default ICE settings:

- ``nat.formation_{lan,cone,symmetric}_s``: two players on one LAN, behind two cone NATs,
  behind two symmetric NATs (median of ``ROUNDS`` rounds in the same processes; each round
  hosts, joins, waits for the link and leaves);
- ``nat.mesh4_*``: ``MESH_ROUNDS`` (20) rounds of a 4-player mesh with two cone and two
  symmetric NATs (TURN available): formation median and max, ``nat.mesh4_cone_relayed``,
  how many rounds relayed a cone-to-cone pair that could have been direct (target 0), and
  ``nat.mesh4_symmetric_direct``, pair ends with a symmetric NAT that were not relayed
  (a wrong report: such a pair cannot be direct).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from bench.harness import Benchmark, Context, Row, Target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from netlab import (  # noqa: E402
    NetLab,
    Player,
    expected_kind,
    pair_kinds,
    start_match,
    unavailable,
)

ROUNDS = 5
MESH_ROUNDS = 20


def _rounds(spec: dict[str, str], rounds: int, ctx: Context, label: str
            ) -> tuple[list[float], list[dict[tuple[str, str], str]]]:
    times, kinds = [], []
    with NetLab(spec) as lab:
        lobby = lab.start_servers()
        players = [Player(lab, name, lobby) for name in spec]
        for i in range(rounds):
            connected = start_match(players)
            kinds.append(pair_kinds(connected, {p.peer_id: p.name for p in players}))
            unexpected = {pair: kind for pair, kind in kinds[-1].items()
                          if kind != expected_kind(lab, *pair) and not (
                              expected_kind(lab, *pair) == "direct"
                              and kind in ("srflx", "prflx"))}
            if unexpected:
                ctx.progress(f"{label} round {i + 1}: unexpected pairs {unexpected}")
            times.append(max(r["seconds"] for r in connected.values()))
            ctx.progress(f"{label} round {i + 1}/{rounds}: {times[-1]:.2f} s")
            for player in players:
                player.send(op="leave")
                player.expect("left_lobby")
    return times, kinds


def run_nat(ctx: Context) -> dict[str, float]:
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(f"NAT lab unavailable: {reason}")
    rounds = 2 if ctx.quick else ROUNDS
    out: dict[str, float] = {}
    for kind, spec in (("lan", {"a": "lan", "b": "lan"}),
                       ("cone", {"a": "cone", "b": "cone"}),
                       ("symmetric", {"a": "symmetric", "b": "symmetric"})):
        times, _ = _rounds(spec, rounds, ctx, kind)
        out[f"nat.formation_{kind}_s"] = statistics.median(times)
    mesh_rounds = 3 if ctx.quick else MESH_ROUNDS
    times, kinds = _rounds({"c1": "cone", "c2": "cone", "s1": "symmetric", "s2": "symmetric"},
                           mesh_rounds, ctx, "4-player mesh")
    out["nat.mesh4_formation_s"] = statistics.median(times)
    out["nat.mesh4_formation_max_s"] = max(times)
    out["nat.mesh4_rounds"] = float(len(times))
    out["nat.mesh4_cone_relayed"] = float(sum(
        "relay" in (k[("c1", "c2")], k[("c2", "c1")]) for k in kinds))
    out["nat.mesh4_symmetric_direct"] = float(sum(
        k[pair] != "relay" for k in kinds for pair in k if "s1" in pair or "s2" in pair))
    return out


BENCHMARKS = [
    Benchmark("nat", run_nat, quick=False, runs=1, rows=(
        Row("NAT formation, 2 players on one LAN (host)", "nat.formation_lan_s", "s"),
        Row("NAT formation, 2 cone NATs (srflx)", "nat.formation_cone_s", "s"),
        Row("NAT formation, 2 symmetric NATs (relay)", "nat.formation_symmetric_s", "s"),
        Row("NAT formation, 4 players (2 cone, 2 symmetric)", "nat.mesh4_formation_s", "s"),
        Row("NAT formation, 4 players, slowest round", "nat.mesh4_formation_max_s", "s"),
        Row("NAT 4-player rounds", "nat.mesh4_rounds", ""),
        Row("NAT rounds relaying a cone-to-cone pair", "nat.mesh4_cone_relayed", "",
            target=Target("<=", 0)),
        Row("NAT symmetric-NAT pair ends not relayed (impossible)",
            "nat.mesh4_symmetric_direct", ""),
    )),
]
