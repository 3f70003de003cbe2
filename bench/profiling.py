"""Where a pair spends its time: ``python -m bench.profiling [aiortc|netplay_async] [--loop L]
[--workload pair|game]``.

Runs the flat-out latency loop of :mod:`bench.pair` (or ``--workload game``: the game workload
of :mod:`bench.game`, both ways, ``--count`` is then seconds) under cProfile and prints own
time per message (per second of play) grouped by package (netplay by module), then the top
functions. This is how the
explanations in ``bench/RESULTS.md`` were made; profiler overhead inflates every row alike, so
compare shares and differences, not absolute times.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
from typing import Any

from bench.harness import LOOPS, run_loop
from bench.link import FACTORIES
from bench.pair import one_way_latency

GROUPS = ("aiortc", "aioice", "OpenSSL", "cryptography", "pyee", "msgpack", "asyncio", "uvloop",
          "bench")


def _group(filename: str, function: str) -> str:
    if "/netplay/" in filename:
        return "netplay/" + filename.rsplit("/netplay/", 1)[1]
    for name in GROUPS:
        if f"/{name}/" in filename or name in function:
            return name
    return "builtins and other"


def profile(sut: str, loop: str, count: int, workload: str = "pair") -> pstats.Stats:
    """Profile ``count`` flat-out messages (``workload="game"``: ``count`` seconds of the game
    workload) over ``sut`` on ``loop``."""
    from bench.game import _Ends, play

    async def main() -> pstats.Stats:
        kwargs: dict[str, Any] = {} if sut == "aiortc" or workload == "pair" \
            else {"send_rate_hz": 60.0}
        async with FACTORIES[sut](None, **kwargs) as link:
            ends = _Ends(sut, link)
            if workload == "game":
                await play(ends, 1.0)
            else:
                await one_way_latency(link, 300, None)  # warm-up
            profiler = cProfile.Profile()
            profiler.enable()
            if workload == "game":
                await play(ends, count)
            else:
                await one_way_latency(link, count, None)
            profiler.disable()
            return pstats.Stats(profiler)

    stats: pstats.Stats = run_loop(loop, main)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("sut", choices=sorted(FACTORIES), nargs="?", default="netplay_async")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15, help="functions to list")
    parser.add_argument("--workload", choices=("pair", "game"), default="pair")
    args = parser.parse_args(argv)

    stats = profile(args.sut, args.loop, args.count, args.workload)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: collections.Counter[str] = collections.Counter()
    for (filename, _, function), (_, _, own, _, _) in raw.items():
        groups[_group(filename, function)] += own
    total = sum(groups.values())
    per = "message" if args.workload == "pair" else "second of play"
    print(f"{args.sut} on {args.loop}: {total * 1000 / args.count:.4f} ms own time per {per}")
    for name, own in groups.most_common():
        print(f"  {name:32s} {own * 1000 / args.count:.4f} ms  {100 * own / total:4.1f}%")
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
