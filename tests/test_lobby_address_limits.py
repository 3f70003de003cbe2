"""signaling.limits.AddressLimits: pure counting with an injected clock."""

from __future__ import annotations

from signaling.limits import AddressLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **overrides: int) -> AddressLimits:
    values = {"max_connections": 2, "max_lobbies": 1, "failed_joins_per_minute": 3}
    values.update(overrides)
    return AddressLimits(clock=clock, **values)


def test_connections_are_counted_per_address() -> None:
    limits = make(Clock())
    assert limits.connect("a") and limits.connect("a")
    assert not limits.connect("a")
    assert limits.connections("a") == 2
    assert limits.connect("b")
    limits.disconnect("a")
    assert limits.connect("a")


def test_lobbies_are_counted_per_address() -> None:
    limits = make(Clock())
    assert limits.may_host("a")
    limits.hosting("a")
    assert not limits.may_host("a") and limits.may_host("b")
    limits.stopped_hosting("a")
    assert limits.may_host("a")
    limits.stopped_hosting("a")  # more releases than holds are ignored
    limits.hosting("a")
    assert not limits.may_host("a")


def test_failed_joins_throttle_then_refill() -> None:
    clock = Clock()
    limits = make(clock)
    for _ in range(3):
        assert limits.may_join("a") == 0
        limits.join_failed("a")
    wait = limits.may_join("a")
    assert 19 < wait <= 20  # 3 per minute: one every 20 s
    assert limits.may_join("b") == 0
    clock.now += 20
    assert limits.may_join("a") == 0
    limits.join_failed("a")
    assert limits.may_join("a") > 0


def test_idle_addresses_are_forgotten() -> None:
    clock = Clock()
    limits = make(clock)
    limits.connect("a")
    limits.disconnect("a")
    assert len(limits) == 0
    limits.join_failed("b")
    limits.prune()
    assert len(limits) == 1  # its failed joins still count
    clock.now += 60
    limits.prune()
    assert len(limits) == 0
