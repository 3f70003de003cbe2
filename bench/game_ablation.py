"""What each packet-saving part of netplay does on the game workload:
``python -m bench.game_ablation [VARIANT ...] [--seconds S] [--runs N] [--json FILE]``.

Runs the game workload of :mod:`bench.game` (two peers, 30 Hz states of ~300 bytes and 5 events
a second each way, uvloop) with one of netplay's packet savings switched off at a time, each
run in its own child process, variants alternating run by run (the machine is shared: a slow
moment hits every variant alike). Prints, per variant, the UDP packets each peer sends per
second (counted at aioice, below DTLS: deterministic, unlike CPU on a busy machine), CPU per
peer-second and state latency p50, with min-max over the runs, and writes them as JSON with
``--json``. The switches replace netplay internals in the child only (a diagnostic, never a
configuration).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from bench.harness import run_child

VARIANTS: dict[str, str] = {
    "aiortc": "raw aiortc: a send() per state and per event, each packet SACKed",
    "netplay": "netplay, everything on",
    "no-ride": "acks and copies do not wait for the next state datagram",
    "no-bundle": "held SACKs go in packets of their own (not in the next DATA packet)",
    "no-sack-delay": "SCTP SACKs every packet, as aiortc does (so nothing to bundle)",
}


def _switch_off(variant: str) -> None:
    from netplay import _aiortc
    from netplay.state import PeerState

    if variant == "no-ride":
        PeerState.next_snapshot_at = lambda self, now: None  # type: ignore[method-assign]
    elif variant == "no-bundle":
        _aiortc._bundling_supported = lambda sctp: False
    elif variant == "no-sack-delay":
        _aiortc.SACK_EVERY = 1


def _count_packets() -> dict[str, int]:
    """Count every data datagram aioice sends (DTLS records: SCTP packets; not STUN)."""
    import aioice.ice

    counter = {"packets": 0}
    send_data = aioice.ice.StunProtocol.send_data

    async def counting(self: Any, data: bytes, addr: Any) -> None:
        counter["packets"] += 1
        await send_data(self, data, addr)

    aioice.ice.StunProtocol.send_data = counting  # type: ignore[method-assign]
    return counter


def ablation_child(variant: str, seconds: float) -> dict[str, float]:
    """One run of the game workload with ``variant``'s part switched off."""
    from bench.game import _Ends, play
    from bench.harness import percentile, run_loop
    from bench.link import FACTORIES

    _switch_off(variant)
    counter = _count_packets()
    sut = "aiortc" if variant == "aiortc" else "netplay_async"

    async def main() -> dict[str, float]:
        kwargs: dict[str, Any] = {} if sut == "aiortc" else {"send_rate_hz": 60.0}
        async with FACTORIES[sut](None, **kwargs) as link:
            ends = _Ends(sut, link)
            await play(ends, 1.0)  # warm-up
            before = counter["packets"]
            cpu, states, _, _, _ = await play(ends, seconds)
            packets = counter["packets"] - before
        return {"packets_per_peer_s": packets / (2 * seconds),
                "cpu_ms_per_peer_s": cpu / (2 * seconds) * 1000,
                "state_p50_ms": percentile(states, 50) * 1000}

    result: dict[str, float] = run_loop("uvloop", main)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.game_ablation", description=__doc__)
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"variants to run (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of play per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    args = parser.parse_args(argv)
    names = args.variants or list(VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for i in range(args.runs):
        for name in names:
            runs[name].append(run_child("bench.game_ablation:ablation_child",
                                        timeout=120 + 4 * args.seconds, variant=name,
                                        seconds=args.seconds))
            print(f"run {i + 1}/{args.runs} {name}: {runs[name][-1]}", flush=True)
    figures: dict[str, dict[str, float]] = {}
    print(f"\n{'variant':14s} {'packets/peer-s':>22s} {'CPU ms/peer-s':>22s} "
          f"{'state p50 ms':>22s}  what")
    for name in names:
        row = {}
        cells = []
        for key in ("packets_per_peer_s", "cpu_ms_per_peer_s", "state_p50_ms"):
            values = [r[key] for r in runs[name]]
            row[key] = statistics.median(values)
            row[key + "_min"], row[key + "_max"] = min(values), max(values)
            cells.append(f"{row[key]:7.2f} ({min(values):.2f}-{max(values):.2f})")
        figures[name] = row
        print(f"{name:14s} " + " ".join(f"{c:>22s}" for c in cells) + f"  {VARIANTS[name]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "runs": args.runs, "variants": figures}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
