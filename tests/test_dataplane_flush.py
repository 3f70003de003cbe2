"""When the data plane sends the next state datagram: the clock it reads (no timing asserts)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from netplay import dataplane
from netplay.dataplane import DataPlane, flush_delay


def test_flush_delay_is_zero_when_the_tick_budget_allows_sending_now() -> None:
    assert flush_delay(float("-inf"), 5.0, 30.0) == 0.0
    assert flush_delay(1.0, 2.0, 30.0) == 0.0
    assert flush_delay(1.0, 1.0 + 1 / 30, 30.0) == 0.0
    assert flush_delay(1.0, 1.01, 10.0) == pytest.approx(0.09)


class FakeLoop:
    """A loop whose ``time()`` is far from ``time.monotonic()`` (as uvloop's cached clock
    lags it): the flush must not depend on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def time(self) -> float:
        return time.monotonic() - 1000.0

    def call_soon(self, callback: Any, *args: Any) -> str:
        self.calls.append(("soon", None))
        return "handle"

    def call_later(self, delay: float, callback: Any, *args: Any) -> str:
        self.calls.append(("later", delay))
        return "handle"

    def call_at(self, when: float, callback: Any, *args: Any) -> str:
        self.calls.append(("at", when))
        return "handle"


def schedule(monkeypatch: pytest.MonkeyPatch, last_sent: float, rate: float
             ) -> tuple[FakeLoop, Any, list[Any]]:
    loop = FakeLoop()
    monkeypatch.setattr(dataplane.asyncio, "get_running_loop", lambda: loop)
    flushed: list[Any] = []
    plane: Any = SimpleNamespace(config=SimpleNamespace(send_rate_hz=rate),
                                 _flush=flushed.append)
    remote: Any = SimpleNamespace(flush_handle=None, state=SimpleNamespace(last_snapshot_sent=last_sent))
    DataPlane._schedule_flush(plane, remote)
    return loop, remote, flushed


def test_flush_goes_out_in_the_call_when_the_budget_allows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop, remote, flushed = schedule(monkeypatch, time.monotonic() - 1.0, 30.0)
    assert loop.calls == [] and flushed == [remote]
    loop, remote, flushed = schedule(monkeypatch, float("-inf"), 30.0)
    assert loop.calls == [] and flushed == [remote]


def test_flush_waits_the_rest_of_the_tick_measured_on_the_monotonic_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop, remote, flushed = schedule(monkeypatch, time.monotonic(), 10.0)
    [(kind, delay)] = loop.calls
    assert kind == "later"
    assert delay is not None and 0.0 < delay <= 0.1
    assert flushed == [] and remote.flush_handle == "handle"


def test_a_pending_flush_is_not_scheduled_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = FakeLoop()
    monkeypatch.setattr(dataplane.asyncio, "get_running_loop", lambda: loop)
    plane: Any = SimpleNamespace(config=SimpleNamespace(send_rate_hz=30.0), _flush=None)
    remote: Any = SimpleNamespace(flush_handle="pending", state=SimpleNamespace(last_snapshot_sent=0.0))
    DataPlane._schedule_flush(plane, remote)
    assert loop.calls == []
