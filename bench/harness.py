"""Benchmark runner: registry, repeated runs, statistics, subprocess children, table and JSON.

A benchmark is a function ``run(ctx) -> {json_key: figure}`` producing one run's figures. The
runner repeats it ``ctx.runs`` times and keeps, per key, the median and the min-max. Table rows
(:class:`Row`) pick figures, pair them with a baseline figure from the same invocation (so the
ratio is measured on the same noisy machine at the same time) and check a target.

Measurements that depend on the event loop run in a child process (:func:`run_child`), so the
loop choice (asyncio or uvloop) and the process state are clean.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Benchmark",
    "Context",
    "Results",
    "Row",
    "Target",
    "machine",
    "percentile",
    "run_child",
    "run_child_per_loop",
    "run_loop",
    "summarize_ms",
]

LOOPS = ("asyncio", "uvloop")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize_ms(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """``{prefix_p50_ms, prefix_p99_ms}`` from latencies in seconds."""
    return {
        f"{prefix}_p50_ms": percentile(seconds, 50) * 1000.0,
        f"{prefix}_p99_ms": percentile(seconds, 99) * 1000.0,
    }


@dataclass(frozen=True)
class Target:
    """A goal for a figure (or for its ratio to the baseline): ``value <op> limit``."""

    op: str
    """``"<="`` or ``">="``."""
    limit: float
    """The bound."""
    on_ratio: bool = False
    """Compare the ratio to the baseline instead of the figure itself."""

    def check(self, value: float, ratio: float | None) -> bool | None:
        """True if met, False if missed, None if it cannot be judged (no figure or ratio)."""
        subject = ratio if self.on_ratio else value
        if subject is None or math.isnan(subject):
            return None
        return subject <= self.limit if self.op == "<=" else subject >= self.limit

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}{'x' if self.on_ratio else ''}"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    label: str
    """What is measured, for people."""
    key: str
    """JSON key of the figure."""
    unit: str = ""
    """Unit shown after the figure."""
    baseline: str | None = None
    """JSON key of the baseline figure the ratio is taken against."""
    target: Target | None = None
    """Goal for the figure or the ratio."""
    ratio_key: str | None = None
    """JSON key under which the ratio is also written (issue 5 names some)."""


@dataclass
class Context:
    """What a benchmark run may read: the mode and where to report progress."""

    quick: bool = False
    """Shorter runs with fewer repetitions."""
    runs: int = 3
    """Repetitions per benchmark; figures are medians over them."""
    progress: Callable[[str], None] = lambda line: None
    """Prints a progress line."""
    errors: dict[str, str] = field(default_factory=dict)
    """Failures of parts of a benchmark (the other parts' figures are kept)."""

    def attempt(self, label: str, run: Callable[[], dict[str, float]]) -> dict[str, float]:
        """``run()``, or ``{}`` with the failure recorded under ``label`` and printed."""
        try:
            return run()
        except Exception as exc:
            self.errors[label] = f"{type(exc).__name__}: {exc}"
            self.progress(f"{label} FAILED: {exc}")
            return {}


@dataclass(frozen=True)
class Benchmark:
    """A named measurement: ``run(ctx)`` returns one run's figures keyed by JSON key."""

    name: str
    """Name used by ``--only`` and in progress lines."""
    run: Callable[[Context], dict[str, float]]
    """Produces the figures of one run."""
    rows: tuple[Row, ...] = ()
    """How its figures appear in the table."""
    quick: bool = True
    """Part of ``--quick``."""
    runs: int | None = None
    """Repetitions when not quick (None: the context's default); long ones run once."""


@dataclass
class Results:
    """Figures of every benchmark run in one invocation."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.samples.setdefault(key, []).append(float(value))

    def median(self, key: str | None) -> float | None:
        values = [v for v in self.samples.get(key or "", []) if not math.isnan(v)]
        return statistics.median(values) if values else None

    def ratio(self, row: Row) -> float | None:
        value, base = self.median(row.key), self.median(row.baseline)
        if value is None or not base:
            return None
        return value / base

    def figures(self) -> dict[str, Any]:
        """JSON document: medians by key, plus min/max/runs, ratios, and target checks."""
        out: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        for key, values in sorted(self.samples.items()):
            clean = [v for v in values if not math.isnan(v)]
            out[key] = statistics.median(clean) if clean else None
            detail[key] = {"min": min(clean, default=None), "max": max(clean, default=None),
                           "runs": len(values)}
        checks = {}
        for row in self.rows:
            ratio = self.ratio(row)
            if row.ratio_key and ratio is not None:
                out[row.ratio_key] = ratio
            if row.target is not None and self.median(row.key) is not None:
                checks[row.key if not row.ratio_key else row.ratio_key] = {
                    "target": str(row.target),
                    "ok": row.target.check(self.median(row.key) or math.nan, ratio)}
        return {"figures": out, "detail": detail, "targets": checks, "errors": self.errors}

    def table(self) -> str:
        """The readable results table."""
        header = ("benchmark", "figure", "min-max", "baseline", "ratio", "target", "ok")
        lines: list[tuple[str, ...]] = [header]
        for row in self.rows:
            value = self.median(row.key)
            if value is None:
                continue
            values = [v for v in self.samples[row.key] if not math.isnan(v)]
            spread = f"{_fmt(min(values))}-{_fmt(max(values))}" if len(values) > 1 else ""
            base = self.median(row.baseline)
            ratio = self.ratio(row)
            check = row.target.check(value, ratio) if row.target else None
            lines.append((
                row.label,
                f"{_fmt(value)} {row.unit}".strip(),
                spread,
                f"{_fmt(base)} {row.unit}".strip() if base is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                str(row.target) if row.target else "",
                {True: "ok", False: "MISS", None: ""}[check],
            ))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        rendered = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                    for line in lines]
        rendered.insert(1, "  ".join("-" * w for w in widths))
        for name, error in self.errors.items():
            rendered.append(f"! {name}: {error}")
        return "\n".join(rendered)

    def markdown(self) -> str:
        """The table as Markdown, for RESULTS.md."""
        text = self.table().splitlines()
        out = []
        for i, line in enumerate(text):
            if line.startswith("! "):
                out.append(f"\n{line}")
                continue
            if i == 1:
                out.append("|---|---|---|---|---|---|---|")
                continue
            cells = _split_fixed(line, text[1])
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)


def _split_fixed(line: str, rule: str) -> list[str]:
    cells, pos = [], 0
    for dashes in rule.split("  "):
        cells.append(line[pos:pos + len(dashes)].strip())
        pos += len(dashes) + 2
    return cells


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def run_loop(loop: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main()`` on the named event loop (``"asyncio"`` or ``"uvloop"``)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())  # type: ignore[arg-type]
    if loop != "asyncio":
        raise ValueError(f"unknown event loop {loop!r}; choose one of {', '.join(LOOPS)}")
    return asyncio.run(main())  # type: ignore[arg-type]


def run_child(target: str, timeout: float = 180.0, **kwargs: Any) -> dict[str, float]:
    """Run ``module:function(**kwargs)`` in a fresh Python process and return its dict result.

    The function runs in ``bench.child`` and its JSON result is the last line of stdout.
    """
    cmd = [sys.executable, "-m", "bench.child", target, json.dumps(kwargs)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{target} failed after {time.monotonic() - started:.1f} s: "
                           + " | ".join(tail))
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_child_per_loop(target: str, timeout: float = 180.0, **kwargs: Any) -> dict[str, float]:
    """:func:`run_child` once per event loop in :data:`LOOPS`, figures merged."""
    figures: dict[str, float] = {}
    for loop in LOOPS:
        figures.update(run_child(target, timeout=timeout, loop=loop, **kwargs))
    return figures


def machine() -> dict[str, str]:
    """Where the figures were measured: date, cores, CPU model, Python and library versions."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cores": str(os.cpu_count()), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform()}
    for package in ("aiortc", "aioice", "uvloop", "uvicorn", "websockets"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "not installed"
    return info
