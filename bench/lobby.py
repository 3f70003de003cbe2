"""Lobby server benchmark (filled in below once signaling/ is complete)."""

from __future__ import annotations

from bench.harness import Benchmark

BENCHMARKS: list[Benchmark] = []
