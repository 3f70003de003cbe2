"""bench/lobby.py: the Node reference relay speaks the protocol subset the load generator uses,
and one tiny load run against each server yields every figure the table shows."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from bench import lobby as bench_lobby
from bench.harness import run_child
from netplay.protocol import PROTOCOL_VERSION

NODE_MISSING = bench_lobby.node_missing()
TINY = {"clients": 8, "rates": [1000], "steps": [200], "seconds": 0.5}
FIGURES = {"clients_held_quick", "memory_per_client_kib", "joins_per_s", "relay_1k_per_s",
           "relay_1k_delivered_pct", "relay_1k_p99_ms", "relay_1k_cpu_us", "sustainable_per_s",
           "saturation_per_s", "saturation_delivered_pct", "saturation_cpu_us",
           "clients_open_after"}


@pytest.mark.skipif(NODE_MISSING is not None, reason=f"Node reference: {NODE_MISSING}")
async def test_node_relay_relays_signals_stamped_with_from() -> None:
    with bench_lobby.node_process() as (port, _pid):
        url = f"ws://127.0.0.1:{port}/ws"
        async with connect(url) as a, connect(url) as b:
            ids = []
            for ws in (a, b):
                await ws.send(json.dumps({"type": "hello", "id": 1, "v": PROTOCOL_VERSION,
                                          "name": "x"}))
                welcome = json.loads(await ws.recv())
                assert welcome["type"] == "welcome"
                ids.append(welcome["peer_id"])
            await a.send(json.dumps({"type": "host", "id": 2, "game": "g"}))
            code = json.loads(await a.recv())["lobby"]["code"]
            await b.send(json.dumps({"type": "join", "id": 2, "code": code}))
            assert json.loads(await b.recv())["type"] == "lobby"
            payload = {"kind": "candidate", "candidate": "c"}
            await a.send(json.dumps({"type": "signal", "to": ids[1], "payload": payload}))
            relayed = json.loads(await b.recv())
            assert relayed == {"type": "signal", "from": ids[0], "payload": payload}


@pytest.mark.parametrize("server", ["lobby", "node"])
def test_a_tiny_load_run_yields_every_figure(server: str) -> None:
    if server == "node" and NODE_MISSING is not None:
        pytest.skip(f"Node reference: {NODE_MISSING}")
    process = bench_lobby.lobby_process if server == "lobby" else bench_lobby.node_process
    prefix = "" if server == "lobby" else "node_"
    with process() as (port, pid):
        figures = run_child("bench.lobby:load_child", timeout=120, port=port, server_pid=pid,
                            prefix=prefix, **TINY)
    assert set(figures) == {f"lobby.{prefix}{key}" for key in FIGURES}
    assert figures[f"lobby.{prefix}clients_held_quick"] == 8
    assert figures[f"lobby.{prefix}relay_1k_delivered_pct"] == 100.0
    assert figures[f"lobby.{prefix}clients_open_after"] == 8
    assert figures[f"lobby.{prefix}relay_1k_cpu_us"] > 0


@pytest.mark.parametrize("impl", ["direct", "asgi"])
def test_the_heap_measurement_counts_what_connections_hold(impl: str) -> None:
    figures = run_child("bench.lobby_heap:heap_child", timeout=120, impl=impl, connections=20)
    assert set(figures) == {f"lobby.heap_{impl}_kib"}
    assert figures[f"lobby.heap_{impl}_kib"] > 0.5  # 20 connections that said hello hold some
