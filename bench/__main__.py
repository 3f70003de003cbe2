"""``python -m bench``: run the benchmarks and print a results table.

    python -m bench                 everything (a few minutes)
    python -m bench --quick         a subset, shorter runs (under a minute)
    python -m bench --only pair     one benchmark (repeatable; see --list)
    python -m bench --json out.json also write every figure, its min-max and target checks
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench import bandwidth, game, impaired, lobby, lobby_heap, lobby_redis, mesh, nat, pair, udp
from bench.harness import Benchmark, Context, Results, machine

FAMILIES = (udp, pair, game, impaired, mesh, bandwidth, lobby, lobby_heap, lobby_redis, nat)


def all_benchmarks() -> list[Benchmark]:
    """Every registered benchmark, in run order."""
    return [b for family in FAMILIES for b in family.BENCHMARKS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short subset (< 1 minute)")
    parser.add_argument("--json", metavar="FILE", help="write all figures as JSON to FILE")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--markdown", metavar="FILE",
                        help="write the machine and the table as Markdown (for RESULTS.md)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3; quick: 1)")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
    args = parser.parse_args(argv)

    benchmarks = all_benchmarks()
    names = [b.name for b in benchmarks]
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
        selected = [b for b in benchmarks if b.name in args.only]
    else:
        selected = [b for b in benchmarks if b.quick or not args.quick]
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    ctx = Context(quick=args.quick, runs=1 if args.quick else args.runs,
                  progress=lambda line: print(f"  {line}", flush=True))
    results = Results(errors=ctx.errors)
    started = time.monotonic()
    for bench in selected:
        runs = 1 if args.quick else (bench.runs or ctx.runs)
        results.rows.extend(bench.rows)
        for i in range(runs):
            t0 = time.monotonic()
            print(f"[{time.monotonic() - started:6.1f}s] {bench.name} run {i + 1}/{runs} ...",
                  end="", flush=True)
            try:
                figures = bench.run(ctx)
            except Exception as exc:  # a failed benchmark is reported, the others still run
                results.errors[bench.name] = f"{type(exc).__name__}: {exc}"
                print(f" FAILED ({exc})", flush=True)
                break
            results.add(figures)
            print(f" {time.monotonic() - t0:.1f}s, {len(figures)} figures", flush=True)

    print()
    print(results.table())
    print(f"\n{len(selected)} benchmarks in {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**results.figures(), "machine": machine()}, fh, indent=2, sort_keys=True)
        print(f"figures written to {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("".join(f"- {k}: {v}\n" for k, v in machine().items()))
            fh.write(f"- command: python -m bench {' '.join(argv or sys.argv[1:])}\n\n")
            fh.write(results.markdown() + "\n")
        print(f"table written to {args.markdown}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
