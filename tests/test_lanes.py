"""netplay.lanes without a network: reliability, ordering, pieces, priorities, epochs."""

from __future__ import annotations

import random
from typing import Any

import pytest

from netplay import wire
from netplay._unpack import UnpackLimits
from netplay.errors import ProtocolError
from netplay.lanes import WINDOW, Inbound, LaneSpec, Outbound, RttEstimator, lane_specs

LANES = [LaneSpec(0, priority=1000), LaneSpec(1), LaneSpec(2, ordered=False),
         LaneSpec(3, reliable=False), LaneSpec(4, priority=-1)]
LIMITS = UnpackLimits(1 << 22)


def decode(records: list[bytes], epoch: int) -> wire.Datagram:
    """Records as the peer decodes them (through a whole datagram)."""
    frame = wire.pack_head(0, 0.0, None, None) + wire.pack_tail(epoch, None, records)
    return wire.unpack_datagram(frame, len(LANES))


class Network:
    """Two endpoints and a lossy, duplicating, reordering link between them (seeded)."""

    def __init__(self, seed: int, loss: float, dup: float = 0.0, reorder: float = 0.0) -> None:
        self.rnd = random.Random(seed)
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.out = Outbound(LANES, piece_size=100, rng=self.rnd)
        self.inn = Inbound(LANES, LIMITS)
        self.now = 0.0
        self.in_flight: list[tuple[float, wire.Datagram]] = []
        self.acks_in_flight: list[tuple[float, wire.Acks]] = []
        self.delivered: list[tuple[int, Any]] = []

    def step(self, dt: float = 0.005) -> None:
        self.now += dt
        records = self.out.take(self.now, 1000, 1e9)
        if records:
            datagram = decode(records, self.out.epoch)
            for _ in range(2 if self.rnd.random() < self.dup else 1):
                if self.rnd.random() >= self.loss:
                    delay = 0.02 + (0.03 if self.rnd.random() < self.reorder else 0.0)
                    self.in_flight.append((self.now + delay, datagram))
        arrived = [d for t, d in self.in_flight if t <= self.now]
        self.in_flight = [(t, d) for t, d in self.in_flight if t > self.now]
        for datagram in arrived:
            assert self.inn.on_epoch(datagram.epoch)
            for record in datagram.records:
                self.delivered += self.inn.receive(record)
        if arrived or self.inn.dirty:
            acks = self.inn.acks()
            assert acks is not None
            if self.rnd.random() >= self.loss:
                self.acks_in_flight.append((self.now + 0.02, acks))
        due = [a for t, a in self.acks_in_flight if t <= self.now]
        self.acks_in_flight = [(t, a) for t, a in self.acks_in_flight if t > self.now]
        for acks in due:
            self.out.on_acks(acks, self.now)


@pytest.mark.parametrize("seed", range(5))
def test_every_message_arrives_once_and_in_order_through_loss_duplication_and_reordering(
        seed: int) -> None:
    net = Network(seed, loss=0.2, dup=0.05, reorder=0.1)
    rnd = random.Random(seed)
    sent: dict[int, list[Any]] = {1: [], 2: [], 4: []}
    for i in range(600):
        lane = rnd.choice((1, 2, 4))
        body = {"i": i, "pad": "x" * rnd.choice((1, 10, 150, 1000))}  # some are cut in pieces
        sent[lane].append(body)
        net.out.push(lane, wire.pack_body(body))
        if i % 10 == 0:
            net.step()
    for _ in range(20_000):
        if net.out.idle() and not net.in_flight:
            break
        net.step()
    assert net.out.idle() and net.out.undelivered == 0
    got = {lane: [body for ln, body in net.delivered if ln == lane] for lane in sent}
    assert got[1] == sent[1]  # ordered lanes: exactly once, in order
    assert got[4] == sent[4]
    assert sorted(b["i"] for b in got[2]) == [b["i"] for b in sent[2]]  # unordered: once each
    assert net.out.resent > 0 and net.inn.duplicates > 0  # the network did its worst


def test_acks_encode_cumulative_id_and_bitfield() -> None:
    inn = Inbound(LANES, LIMITS)
    assert inn.acks() is None
    inn.on_epoch(9)
    for rid in (0, 1, 3, 4, 12):
        inn.receive(wire.Record(rid, 2, rid, "x"))
    acks = inn.acks()
    assert acks == wire.Acks(9, 2, bytes([0b0000_0011, 0b0000_0010]))
    assert acks.received() == [3, 4, 12]
    inn.receive(wire.Record(2, 2, 2, "x"))
    assert inn.acks() == wire.Acks(9, 5, b"\x40")


def test_acked_records_are_not_resent_and_lost_ones_are() -> None:
    out = Outbound(LANES, min_rto=0.05, copies=0)
    for i in range(5):
        out.push(1, wire.pack_body(i))
    first = out.take(0.0, 10_000, 1e9)
    assert len(first) == 5 and out.in_flight == 5
    # ids 0, 1, 3, 4 arrive; 2 is lost
    assert out.on_acks(wire.Acks(out.epoch, 2, b"\x03"), 0.03) > 0
    assert out.in_flight == 1 and out.undelivered == 1
    assert out.take(0.031, 10_000, 1e9) == []  # not yet: within RTT + reordering allowance
    again = out.take(0.2, 10_000, 1e9)
    assert again == [first[2]] and out.resent == 1
    out.on_acks(wire.Acks(out.epoch, 5), 0.25)
    assert out.idle() and out.undelivered == 0
    assert out.on_acks(wire.Acks(out.epoch + 1, 99), 0.3) == 0  # another stream's acks


def test_small_records_are_copied_into_later_datagrams_until_acked() -> None:
    out = Outbound(LANES, copy_gap=0.015)
    out.push(1, wire.pack_body("hit"))
    out.push(4, wire.pack_body(b"B" * 5000))  # pieces are too big to copy
    first = out.take(0.0, 10_000, 1e9)
    assert len(first) == 7 and out.next_timeout() == pytest.approx(0.015)
    assert out.take(0.01, 10_000, 1e9) == []  # not yet
    assert out.take(0.015, 10_000, 1e9) == [first[0]]  # the first copy, a tick later
    assert out.take(0.03, 10_000, 1e9) == [first[0]]  # the second
    assert out.take(0.045, 10_000, 1e9) == []  # then only RACK and the RTO resend it
    assert out.resent == 0
    out.on_acks(wire.Acks(out.epoch, 1), 0.05)
    assert out.rtt.srtt == pytest.approx(0.05)  # measured from the first send
    acked = Outbound(LANES, copy_gap=0.015)
    acked.push(1, wire.pack_body("hit"))
    acked.take(0.0, 10_000, 1e9)
    acked.on_acks(wire.Acks(acked.epoch, 1), 0.01)
    assert acked.take(0.02, 10_000, 1e9) == [] and acked.next_timeout() is None


def test_higher_priority_lanes_go_first_and_a_big_message_waits_its_turn() -> None:
    out = Outbound(LANES, piece_size=100)
    out.push(4, wire.pack_body(b"B" * 5000))  # bulk, low priority, 51 pieces
    out.push(1, wire.pack_body("event"))
    out.push(0, wire.pack_body(["bye", "left"]))
    records = out.take(0.0, 400, 1e9)
    lanes = [decode([r], out.epoch).records[0].lane for r in records]
    assert lanes[:2] == [0, 1] and set(lanes[2:]) == {4}
    assert sum(len(r) for r in records) <= 400


def test_pacing_budget_and_window_bound_what_is_sent() -> None:
    out = Outbound(LANES, piece_size=100, window=10)
    for _ in range(50):
        out.push(1, wire.pack_body("m" * 50))
    assert len(out.take(0.0, 100_000, 150)) == 3  # the budget runs out (one record may cross)
    assert len(out.take(0.0, 100_000, 1e9)) == 7  # the window: 10 outstanding ids
    assert not out.window_open() and out.take(0.0, 100_000, 1e9) == []
    out.on_acks(wire.Acks(out.epoch, 4), 0.01)
    assert len(out.take(0.01, 100_000, 1e9)) == 4


def test_a_rebuilt_link_resends_what_was_in_flight_and_the_receiver_drops_doubles() -> None:
    out, inn = Outbound(LANES), Inbound(LANES, LIMITS)
    for i in range(3):
        out.push(1, wire.pack_body(i))
    first = decode(out.take(0.0, 10_000, 1e9), out.epoch)
    inn.on_epoch(first.epoch)
    assert [body for r in first.records[:2] for _, body in inn.receive(r)] == [0, 1]
    out.resend_all()  # the old link died before any ack came back
    again = decode(out.take(0.001, 10_000, 1e9), out.epoch)
    assert [r.rid for r in again.records] == [0, 1, 2]
    assert [body for r in again.records for _, body in inn.receive(r)] == [2]
    assert inn.duplicates == 2


def test_a_new_epoch_starts_a_new_stream_and_old_datagrams_are_ignored() -> None:
    inn = Inbound(LANES, LIMITS)
    assert inn.on_epoch(5)
    assert inn.receive(wire.Record(0, 1, 0, "old")) == [(1, "old")]
    assert inn.on_epoch(6)  # the peer restarted its stream: ids start again
    assert inn.receive(wire.Record(0, 1, 0, "new")) == [(1, "new")]
    assert not inn.on_epoch(5)  # a late datagram of the retired stream


def test_records_beyond_the_window_are_not_accepted() -> None:
    inn = Inbound(LANES, LIMITS)
    inn.on_epoch(1)
    assert inn.receive(wire.Record(WINDOW + 5, 2, 0, "far")) == []
    assert inn.acks() == wire.Acks(1, 0)  # not acknowledged: the sender resends it later


def test_bad_records_raise_protocol_errors() -> None:
    inn = Inbound(LANES, UnpackLimits(250))
    inn.on_epoch(1)
    with pytest.raises(ProtocolError, match="unreliable record on reliable"):
        inn.receive(wire.Record(None, 1, None, "x"))
    with pytest.raises(ProtocolError, match="reliable record on unreliable"):
        inn.receive(wire.Record(0, 3, 0, "x"))
    with pytest.raises(ProtocolError, match="not a lane"):
        inn.receive(wire.Record(1, 7, 0, "x"))
    inn.receive(wire.Record(2, 1, 0, b"a" * 100, 0, 3))
    with pytest.raises(ProtocolError, match="does not fit"):
        inn.receive(wire.Record(3, 1, 0, b"a" * 100, 1, 2))
    inn.receive(wire.Record(4, 1, 1, b"a" * 200, 0, 3))
    with pytest.raises(ProtocolError, match="limit"):
        inn.receive(wire.Record(5, 1, 1, b"a" * 100, 1, 3))
    assert inn.receive(wire.Record(None, 3, None, "fine")) == [(3, "fine")]


def test_bad_messages_on_an_unordered_lane_are_remembered_boundedly() -> None:
    """A peer sending ever more broken pieced messages on an unordered lane (no delivery
    order prunes what was found bad there) costs a bounded memory."""
    inn = Inbound(LANES, UnpackLimits(250), window=64)
    inn.on_epoch(1)
    rid = 0
    for lseq in range(200):
        inn.receive(wire.Record(rid, 2, lseq, b"a" * 10, 0, 2))
        with pytest.raises(ProtocolError, match="does not fit"):
            inn.receive(wire.Record(rid + 1, 2, lseq, b"a" * 10, 1, 3))
        rid += 2
    failed = inn._lanes[2].failed
    assert len(failed) <= 64 and 199 in failed  # the newest are kept
    # the rest of a message found bad is still ignored, and the lane still delivers
    assert inn.receive(wire.Record(rid, 2, 199, b"a" * 10, 1, 2)) == []
    assert inn.receive(wire.Record(rid + 1, 2, 500, "fine")) == [(2, "fine")]


def test_rtt_estimator_follows_rfc_6298() -> None:
    rtt = RttEstimator()
    assert rtt.rto(0.03) == 0.2
    rtt.sample(0.1)
    assert rtt.srtt == 0.1 and rtt.rttvar == 0.05 and rtt.rto(0.03) == pytest.approx(0.3)
    for _ in range(50):
        rtt.sample(0.1)
    assert rtt.rto(0.03) == pytest.approx(0.1, abs=0.01)
    assert rtt.rto(0.5) == 0.5  # the floor (a couple of ticks)
    assert rtt.min_rtt == 0.1


def test_lane_specs_follow_the_channels() -> None:
    from netplay import ChannelConfig

    specs = lane_specs((ChannelConfig.unreliable("state"), ChannelConfig.reliable("events"),
                        ChannelConfig.reliable("files", priority=-5),
                        ChannelConfig.unreliable("voice")))
    assert specs[0].priority > specs[1].priority > specs[2].priority
    assert (specs[2].reliable, specs[3].reliable, specs[3].ordered) == (True, False, False)
