"""What each part of netplay's snapshot path costs: ``python -m bench.ablation``.

Runs the flat-out pair of :mod:`bench.pair` (one 200-byte snapshot in flight, both peers in
one process, uvloop) with one part of netplay's per-snapshot work switched off at a time, each
variant in its own child process, and prints CPU per 10k snapshots and one-way p50/p99 next to
raw aiortc and full netplay. The switches replace netplay internals in the child only (a
diagnostic, never a configuration): the difference to "netplay" is what that part costs.
"features" minus "plumbing" is the state protocol's core: checking, copying and encoding each
snapshot, the datagram header, decoding and checking it on arrival, per-peer bookkeeping.
Unlike cProfile (:mod:`bench.profiling`) this adds no per-call overhead, so it shows what the
parts cost in a real run, where netplay's code shares the CPU caches with aiortc's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.harness import percentile, run_child, run_loop

VARIANTS: dict[str, str] = {
    "aiortc": "raw aiortc (the baseline)",
    "netplay": "netplay, everything on",
    "plumbing": "netplay's Mesh/PeerLink plumbing only: no state protocol at all",
    "stats": "no per-packet stats (StatsTracker)",
    "clock": "no clock samples (ClockSync)",
    "interp": "no interpolation buffer",
    "order": "no stale/duplicate/loss tracking (SnapshotBuffer)",
    "delta": "no delta encode/decode",
    "sctp": "no SCTP hook (unknown-stream guard)",
    "lanes": "no reliable-lane bookkeeping on state datagrams (acks, epoch, records)",
    "features": "all of stats, clock, interp, order, delta, sctp, lanes off",
}
FEATURES = ("stats", "clock", "interp", "order", "delta", "sctp", "lanes")


def _switch_off(parts: tuple[str, ...]) -> None:
    """Replace the named parts of netplay with no-ops (in this process only)."""
    from bench.link import _ice as hooks
    from netplay import clock, dataplane, delta, interpolation, lanes, snapshots, stats

    if "stats" in parts:
        stats.StatsTracker.on_send = lambda self, now, nbytes: None  # type: ignore[method-assign]
        stats.StatsTracker.on_receive = (  # type: ignore[method-assign]
            lambda self, now, nbytes: None)
        stats.StatsTracker.on_snapshot = lambda self, now: None  # type: ignore[method-assign]
    if "clock" in parts:
        clock.ClockSync.on_sample = lambda self, *times: True  # type: ignore[method-assign]
    if "interp" in parts:
        interpolation.InterpolationBuffer.add = (  # type: ignore[method-assign]
            lambda self, *args, **kwargs: None)
    if "order" in parts:
        snapshots.SnapshotBuffer.push = (  # type: ignore[method-assign]
            lambda self, *args: snapshots.Verdict.ACCEPTED)
    if "delta" in parts:
        # Whole snapshots, but the sequence bookkeeping stays: the data plane judges "snapshots
        # queue in the network" by the acked seq (DeltaEncoder.acked), fed by the decoder's
        # newest seq, and holds snapshots back without it.
        def encode(self: Any, seq: int, state: Any, *, copy: bool = True) -> tuple[None, Any]:
            sent = self._sent
            if len(sent) > 64:
                del sent[next(iter(sent))]
            sent[seq] = state
            return None, state

        def decode(self: Any, seq: int, baseline: Any, body: Any, *, copy: bool = True) -> Any:
            self._newest = seq
            return body

        delta.DeltaEncoder.encode = encode  # type: ignore[method-assign]
        delta.DeltaDecoder.decode = decode  # type: ignore[method-assign]
    if "sctp" in parts:
        if not hasattr(hooks, "guard_streams"):  # before the hooks were one module
            from netplay import _sctp as hooks  # type: ignore[no-redef]
        hooks.guard_streams = lambda sctp, on_bad: False
    if "lanes" in parts:
        # With no reliable traffic (this benchmark sends snapshots only) the lanes only add
        # their per-datagram work: acks to build, the records to take, the epoch check.
        lanes.Inbound.acks = lambda self: None  # type: ignore[method-assign]
        lanes.Inbound.on_epoch = lambda self, epoch: True  # type: ignore[method-assign]
        lanes.Outbound.take = (  # type: ignore[method-assign]
            lambda self, now, room, budget: [])
    if "plumbing" in parts:
        # Raw bytes on the link's one channel: no datagram, no lanes, no snapshot protocol.
        def send_state(self: Any, state: Any, to: Any = None, *, tick: Any = None) -> bool:
            for r in self.targets(to):
                r.link.send(state)
            return True

        def on_frame(self: Any, r: Any, data: Any) -> None:
            self.channels[0]._deliver(r.id, data)

        dataplane.DataPlane.send_state = send_state  # type: ignore[method-assign]
        dataplane.DataPlane.on_frame = on_frame  # type: ignore[method-assign]


def ablation_child(variant: str, count: int, reps: int) -> dict[str, float]:
    """``reps`` flat-out runs of ``count`` snapshots with ``variant``'s parts switched off."""
    from bench.link import FACTORIES
    from bench.pair import one_way_latency

    parts = FEATURES if variant == "features" else (variant,)
    _switch_off(parts)
    sut = "aiortc" if variant == "aiortc" else "netplay_async"

    async def main() -> dict[str, float]:
        cpu, p50, p99 = [], [], []
        async with FACTORIES[sut](None) as link:
            await one_way_latency(link, 300, None)  # warm-up
            for _ in range(reps):
                cpu0 = time.process_time()
                samples = await one_way_latency(link, count, None)
                cpu.append((time.process_time() - cpu0) / max(len(samples), 1) * 10_000)
                p50.append(percentile(samples, 50) * 1000)
                p99.append(percentile(samples, 99) * 1000)
        return {"cpu_s_per_10k": statistics.median(cpu), "p50_ms": statistics.median(p50),
                "p99_ms": statistics.median(p99)}

    result: dict[str, float] = run_loop("uvloop", main)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__)
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"variants to run (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--count", type=int, default=3000, help="snapshots per run")
    parser.add_argument("--reps", type=int, default=5, help="runs per variant (median)")
    args = parser.parse_args(argv)
    names = args.variants or list(VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    results = {}
    for name in names:
        results[name] = run_child("bench.ablation:ablation_child", timeout=300, variant=name,
                                  count=args.count, reps=args.reps)
        r = results[name]
        print(f"{name:9s} CPU {r['cpu_s_per_10k']:.3f} s/10k  p50 {r['p50_ms']:.4f} ms  "
              f"p99 {r['p99_ms']:.4f} ms  ({VARIANTS[name]})", flush=True)
    full = results.get("netplay")
    if full is not None:
        print("\nvs netplay (negative: what the part costs)")
        for name, r in results.items():
            if name != "netplay":
                print(f"{name:9s} CPU {r['cpu_s_per_10k'] - full['cpu_s_per_10k']:+.3f} s/10k  "
                      f"p50 {r['p50_ms'] - full['p50_ms']:+.4f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
