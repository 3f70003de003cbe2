"""PeerState (one peer's state channel) and WarnLimiter, without a network."""

from __future__ import annotations

import logging

import pytest

from netplay import wire
from netplay._ratelimit import WarnLimiter
from netplay.errors import ProtocolError
from netplay.state import NOTHING, PeerState


def over_the_wire(datagram: wire.Datagram) -> wire.Datagram:
    return wire.unpack_datagram(wire.pack_datagram(datagram))


def test_snapshots_delta_against_acked_baselines_and_decode_exactly() -> None:
    alice, bob = PeerState(0.0), PeerState(0.0)
    world = {"players": {"a": {"x": 0, "y": 0}, "b": {"x": 5, "y": 5}}, "map": "m" * 100}
    now = 0.0
    first_sizes, later_sizes = [], []
    for step in range(20):
        now += 1 / 30
        world = {**world, "players": {**world["players"], "a": {"x": step, "y": 0}}}
        alice.set_pending(world, tick=step)
        packet = wire.pack_datagram(alice.build(now))
        (first_sizes if step < 1 else later_sizes).append(len(packet))
        got = bob.receive(wire.unpack_datagram(packet), now + 0.05)
        assert got == world
        # bob's reply carries the ack (and the clock echo)
        alice.receive(over_the_wire(bob.build(now + 0.05)), now + 0.1)
    assert max(later_sizes) < min(first_sizes) / 2  # deltas once a baseline is acked
    stats = bob.peer_stats(now)
    assert stats.snapshots_received == 20 and stats.loss == 0.0
    assert alice.peer_stats(now).delta_bytes_saved > 0
    assert alice.peer_stats(now).rtt_ms == pytest.approx(100, abs=1)


def test_head_with_packed_snapshots_sends_the_same_bytes_as_build() -> None:
    """The data plane's path (state encoded once, a private copy as baseline) and build()."""
    plain, packed, bob = PeerState(0.0), PeerState(0.0), PeerState(0.0)
    world: dict[str, object] = {"p": {"a": [0, 0], "b": [5, 5]}, "map": "m" * 100, "hp": 1.5}
    now = 0.0
    for step in range(40):
        now += 1 / 30
        world = {**world, "p": {**world["p"], "a": [step, -step]}}  # type: ignore[dict-item]
        if step % 7 == 3:
            world = {**world, "hp": step * 0.5, "new": step}
        sent = {"other": step} if step % 11 == 5 else world
        plain.set_pending(sent, tick=step)
        packed.set_pending(wire.unpack_body(wire.pack_body(sent)), step, wire.pack_body(sent))
        frame = packed.head(now) + wire.pack_tail(1, None, ())
        assert frame == wire.pack_datagram(plain.build(now))
        assert bob.receive(wire.unpack_datagram(frame), now) == sent
        if step % 3 != 2:  # some acks get lost
            reply = over_the_wire(bob.build(now + 0.01))
            plain.receive(reply, now + 0.02)
            packed.receive(reply, now + 0.02)
    assert packed.head(now + 1) + wire.pack_tail(1, None, ()) == wire.pack_datagram(plain.build(now + 1))  # heartbeat
    assert packed.peer_stats(now).delta_bytes_saved == plain.peer_stats(now).delta_bytes_saved
    assert packed.peer_stats(now).delta_bytes_saved > 0


def test_stale_duplicate_and_heartbeat_datagrams() -> None:
    alice, bob = PeerState(0.0), PeerState(0.0)
    alice.set_pending({"n": 1}, tick=1)
    first = over_the_wire(alice.build(1.0))
    alice.set_pending({"n": 2}, tick=2)
    second = over_the_wire(alice.build(1.1))
    heartbeat = over_the_wire(alice.build(1.2))
    assert heartbeat.snapshot is None and not alice.has_pending
    assert bob.receive(second, 1.15) == {"n": 2}
    assert bob.receive(first, 1.16) is NOTHING          # stale: never current
    assert bob.receive(second, 1.17) is NOTHING         # duplicate
    assert bob.receive(heartbeat, 1.25) is NOTHING
    assert bob.last_heard == 1.25
    stats = bob.peer_stats(1.3)
    assert (stats.stale, stats.duplicates) == (1, 1)


def test_pending_snapshot_is_replaced_newest_wins() -> None:
    alice = PeerState(0.0)
    for n in range(5):
        alice.set_pending({"n": n}, tick=n)
    datagram = alice.build(1.0)
    assert datagram.snapshot is not None and datagram.snapshot.body == {"n": 4}
    assert alice.build(1.1).snapshot is None


def test_delta_without_baseline_is_a_protocol_error() -> None:
    bob = PeerState(0.0)
    bad = wire.Datagram(1, 1.0, snapshot=wire.Snapshot(3, 1, 2, {"x": 1}))
    with pytest.raises(ProtocolError, match="baseline"):
        bob.receive(bad, 1.0)


def test_warn_limiter_logs_once_per_interval_per_key(caplog: pytest.LogCaptureFixture) -> None:
    limiter = WarnLimiter(logging.getLogger("netplay.test"), interval=60)
    with caplog.at_level(logging.WARNING, logger="netplay.test"):
        assert limiter.warn("p1", "bad %s", "x")
        assert not limiter.warn("p1", "bad %s", "y")
        assert limiter.warn("p2", "bad %s", "z")
        limiter.forget("p1")
        assert limiter.warn("p1", "bad %s", "again")
    assert [r.getMessage() for r in caplog.records] == ["bad x", "bad z", "bad again"]
    limiter.interval = 0
    with caplog.at_level(logging.WARNING, logger="netplay.test"):
        limiter.warn("p3", "m")
        limiter.interval = 60
        limiter.warn("p3", "m")
        limiter.interval = 0
        limiter.warn("p3", "m")
    assert caplog.records[-1].getMessage() == "m (1 similar warnings suppressed)"


def test_snapshots_over_budget_only_when_the_link_delivers_less_than_is_sent() -> None:
    def run(delivery_interval: float) -> list[bool]:
        """alice sends a 300-byte snapshot every 1/60 s for 2 s; the link delivers one
        datagram per ``delivery_interval``, and bob's ack comes back at once."""
        alice, bob = PeerState(0.0), PeerState(0.0)
        queue: list[bytes] = []
        verdicts, now, next_delivery = [], 0.0, 0.0
        for step in range(120):
            now = step / 60
            verdicts.append(alice.snapshots_over_budget(now, round_trip=0.05))
            alice.set_pending({"n": step, "pad": "p" * 300}, tick=step)
            queue.append(alice.head(now) + wire.pack_tail(1, None, ()))
            while queue and now >= next_delivery:
                bob.receive(wire.unpack_datagram(queue.pop(0)), now)
                alice.receive(wire.unpack_datagram(bob.head(now, snapshot=False)
                                                   + wire.pack_tail(1, None, ())), now)
                next_delivery = now + delivery_interval
        return verdicts

    assert not any(run(0.0))  # a fast link: never held back
    slow = run(0.1)  # 10 datagrams a second get through: the sender must hold back
    assert any(slow[60:]) and sum(slow[60:]) > 40
