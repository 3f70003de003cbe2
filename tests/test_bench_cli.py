"""``python -m bench`` works from a fresh install: it runs benchmarks, prints the table and writes
JSON with figures, baselines and target checks. (Speed itself is never asserted in tests.)"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


def test_bench_lists_every_family() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    names = set(result.stdout.split())
    assert {"pair", "throughput", "mesh", "mesh_raw", "impaired", "bandwidth", "lobby",
            "setup", "udp_latency"} <= names


def test_bench_runs_and_writes_json(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "bandwidth", "--only",
         "udp_latency", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "benchmark" in result.stdout and "ratio" in result.stdout  # the table header
    data = json.loads(out.read_text())
    figures = data["figures"]
    assert figures["bandwidth.full_bytes"] > 0
    assert 0 < figures["bandwidth.delta_ratio"] < 1
    for loop in ("asyncio", "uvloop"):  # the raw UDP baseline, on both loops
        p50, p99 = figures[f"latency.udp_{loop}_p50_ms"], figures[f"latency.udp_{loop}_p99_ms"]
        assert 0 < p50 <= p99
    assert data["machine"]["aiortc"] and data["machine"]["cores"]
