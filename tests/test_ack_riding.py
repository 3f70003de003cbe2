"""Acks and proactive copies ride in the next snapshot datagram when one is due soon.

A game sends a state every tick and a few events a second. The event's ack, and the copies
the sender makes of it, go in the state datagrams both peers send anyway, within the wire
format's ack delay bound (``wire.MAX_ACK_DELAY``): no datagram of their own.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from mesh_helpers import full_mesh

from netplay import dataplane, wire
from netplay.dataplane import ACK_DELAY, DataPlane
from netplay.lanes import COPY_RIDE, LaneSpec, Outbound
from netplay.state import PeerState

pytestmark = pytest.mark.timeout(120)

TICK = 1 / 30


def steady_state(start: float, ticks: int, missing: tuple[int, ...] = ()) -> PeerState:
    """A peer state whose snapshots went out every ``TICK`` since ``start``, and the peer's
    arrived at the same pace (but for the ones in ``missing``): a clean path, by default."""
    state = PeerState(start)
    for i in range(ticks):
        state.set_pending({"x": i}, i + 1, None)
        state.head(start + i * TICK)
        if i not in missing:
            state.snapshots.push(i, i + 1, start + i * TICK, start + i * TICK + 0.001)
    return state


def test_next_snapshot_is_expected_one_smoothed_gap_after_the_last() -> None:
    state = steady_state(100.0, 10)
    last = 100.0 + 9 * TICK
    assert state.snapshot_gap == pytest.approx(TICK)
    assert state.next_snapshot_at(last + 0.01) == pytest.approx(last + TICK)
    assert state.next_snapshot_at(last + 3 * TICK) is None  # the stream paused
    assert PeerState(0.0).next_snapshot_at(1.0) is None  # nothing sent yet
    paused = steady_state(100.0, 5)
    paused.set_pending({"x": 9}, 9, None)
    paused.head(200.0)  # after a long pause: not a gap of the stream
    assert paused.snapshot_gap == pytest.approx(TICK)


def test_acks_and_copies_ride_only_on_a_path_seen_clean() -> None:
    """Riding needs evidence of a clean path: the peer's snapshots arrive, none missing.
    On a lossy path, or with no snapshots from the peer to judge by, acks and copies go at
    once (a wait to ride in a state datagram adds to every loss recovery)."""
    last = 100.0 + 9 * TICK
    now = last + 0.002
    clean = SimpleNamespace(state=steady_state(100.0, 10))
    assert not dataplane.lossy(clean, now)
    assert dataplane.ride_at(clean, now) == pytest.approx(last + TICK)
    lost_one = SimpleNamespace(state=steady_state(100.0, 10, missing=(4,)))
    assert dataplane.lossy(lost_one, now) and dataplane.ride_at(lost_one, now) is None
    assert DataPlane._ack_deadline(SimpleNamespace(), SimpleNamespace(
        state=lost_one.state, unacked_datagrams=1), now) == now + ACK_DELAY
    silent = PeerState(100.0)  # our states go steadily, but the peer sends none
    for i in range(10):
        silent.set_pending({"x": i}, i + 1, None)
        silent.head(100.0 + i * TICK)
    assert dataplane.lossy(SimpleNamespace(state=silent), now)
    stale = SimpleNamespace(state=steady_state(100.0, 10))  # its last one long ago
    later = last + dataplane.RIDE_EVIDENCE + 0.01
    assert dataplane.lossy(stale, later)


def plane_for(state: PeerState, unacked: int = 1) -> tuple[Any, Any]:
    plane: Any = SimpleNamespace()
    remote: Any = SimpleNamespace(state=state, unacked_datagrams=unacked)
    return plane, remote


def test_an_ack_waits_for_the_next_snapshot_when_it_is_due_within_the_bound() -> None:
    state = steady_state(100.0, 10)
    last = 100.0 + 9 * TICK
    plane, remote = plane_for(state)
    now = last + 0.002
    at = DataPlane._ack_deadline(plane, remote, now)
    assert last + TICK < at <= now + wire.MAX_ACK_DELAY  # after the snapshot, within bound


def test_an_ack_goes_soon_without_a_steady_stream_or_during_a_burst() -> None:
    state = steady_state(100.0, 10)
    last = 100.0 + 9 * TICK
    plane, remote = plane_for(state, unacked=2)  # a second datagram of records: a burst
    assert DataPlane._ack_deadline(plane, remote, last + 0.002) == last + 0.002 + ACK_DELAY
    plane, remote = plane_for(PeerState(0.0))  # no snapshots sent: nothing to ride in
    assert DataPlane._ack_deadline(plane, remote, 5.0) == 5.0 + ACK_DELAY
    slow = steady_state(100.0, 10)  # 30 Hz states, but the stream stopped
    plane, remote = plane_for(slow)
    now = last + 3 * TICK
    assert DataPlane._ack_deadline(plane, remote, now) == now + ACK_DELAY


def test_an_ack_never_waits_beyond_the_wire_bound() -> None:
    state = PeerState(0.0)  # 10 Hz snapshots: the next is further off than the bound allows
    for i in range(5):
        state.set_pending({"x": i}, i + 1, None)
        state.head(10.0 + i * 0.1)
    plane, remote = plane_for(state)
    now = 10.4 + 0.001
    assert DataPlane._ack_deadline(plane, remote, now) == now + ACK_DELAY


def test_a_copy_due_shortly_before_the_next_snapshot_rides_in_it() -> None:
    out = Outbound([LaneSpec(0, True, True, 0), LaneSpec(1, True, True, 0)], copy_gap=1 / 60)
    out.push(1, wire.pack_body("hit"))
    assert len(out.take(0.0, 10_000, 1e9)) == 1
    copy_due = out.next_timeout()
    assert copy_due == pytest.approx(1 / 60)
    ride = TICK  # the next snapshot: one game tick (two copy gaps at 60 Hz) later
    assert ride <= copy_due + COPY_RIDE * out.copy_gap
    assert out.next_timeout(ride) == pytest.approx(ride + out.copy_gap)  # waits for it
    assert not out.has_due(copy_due + 0.001, ride)
    assert out.has_due(copy_due + 0.001)  # without a snapshot to ride in, it is due
    assert out.next_timeout(ride=1.0) == pytest.approx(copy_due)  # too far off: on its own
    # and the snapshot datagram takes the copy when it goes
    assert len(out.take(ride, 10_000, 1e9)) == 1


async def test_event_acks_and_copies_ride_in_state_datagrams(lobby: Any) -> None:
    """Two real peers, each sending 30 Hz states and 5 events a second: almost every
    datagram a peer sends carries a state (without riding, each event costs the receiver
    an ack datagram and the sender a copy datagram or two)."""
    async with full_mesh(lobby, 2, send_rate_hz=60.0) as meshes:
        a, b = meshes
        got = {a.peer_id: 0, b.peer_id: 0}

        def counter(mesh: Any) -> Any:
            def deliver(peer: str, body: Any) -> None:
                got[mesh.peer_id] += 1
            return deliver

        for mesh in meshes:
            mesh.channel("events")._deliver = counter(mesh)
        remotes = [a._plane.remotes[b.peer_id], b._plane.remotes[a.peer_id]]
        sent_before = [r.state.stats._packets_out.total for r in remotes]
        pumps = [0, 0]
        for i, mesh in enumerate(meshes):  # scheduled through the bound method: count runs
            def counting(r: Any, i: int = i, pump: Any = mesh._plane._pump) -> None:
                pumps[i] += 1
                pump(r)
            mesh._plane._pump = counting
        loop = asyncio.get_running_loop()
        start, frames, events = loop.time(), 120, 0
        for frame in range(frames):  # 4 s of a game loop: the tick's events, then its state
            for mesh in meshes:
                if frame % 6 == 0:
                    mesh.send_event({"frame": frame})
                mesh.send_state({"frame": frame, "pad": "x" * 250})
            events += frame % 6 == 0
            await asyncio.sleep(max(0.0, start + (frame + 1) * TICK - loop.time()))
        async with asyncio.timeout(30):
            while min(got.values()) < events:
                await asyncio.sleep(0.01)
        datagrams = [r.state.stats._packets_out.total - s for r, s in
                     zip(remotes, sent_before, strict=True)]
        for sent in datagrams:  # one per state, and a few more: far fewer than one per event
            extra = sent - frames
            assert extra <= events / 2, (datagrams, frames, events)
        # and the loop is not woken for acks a state datagram already carried: about one
        # or two pumps per event sent (finding the event gone with its tick's state), not one per
        # state received
        assert max(pumps) <= 3 * events + 10, (pumps, events)  # was about 7 per event
        assert dataplane.ACK_DELAY < wire.MAX_ACK_DELAY
