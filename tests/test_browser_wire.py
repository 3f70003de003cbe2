"""The JavaScript client's wire codec against Python's, in real Chromium; and the numeric rules
of docs/wire.md section 3 on the Python side (ticks within 2^53)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from browser_helpers import chromium
from mesh_helpers import config

import netplay
from netplay import wire
from netplay.errors import ProtocolError
from netplay.mesh import Mesh

BAD = [
    [1, 2.0, None, None],
    {"seq": 1},
    [65536, 1.0, None, None, None, 1, None, []],
    [True, 1.0, None, None, None, 1, None, []],
    [1, "now", None, None, None, 1, None, []],
    [1, float("nan"), None, None, None, 1, None, []],
    [1, 1e300, None, None, None, 1, None, []],
    [1, 1.7e12, None, None, None, 1, None, []],  # Date.now(): milliseconds since 1970
    [1, 1.0, [1.0], None, None, 1, None, []],
    [1, 1.0, None, -1, None, 1, None, []],
    [1, 1.0, None, None, [1, 2, None], 1, None, []],
    [1, 1.0, None, None, [1, 2.5, None, {}], 1, None, []],
    [1, 1.0, None, None, [1, 2**53, None, {}], 1, None, []],  # tick beyond 2^53
    [1, 1.0, None, None, [1, 2, 70000, {}], 1, None, []],
    [1, 1.0, None, None, None, 0, None, []],
    [1, 1.0, None, None, None, 2**31, None, []],
    [1, 1.0, None, None, None, 1, [1, 2], []],
    [1, 1.0, None, None, None, 1, [1, -2, b""], []],
    [1, 1.0, None, None, None, 1, [1, 2, b"\x00" * 300], []],
    [1, 1.0, None, None, None, 1, None, {}],
    [1, 1.0, None, None, None, 1, None, [[1, 2]]],
    [1, 1.0, None, None, None, 1, None, [[1, 300, 0, "x"]]],
    [1, 1.0, None, None, None, 1, None, [[2**53, 1, 0, "x"]]],
    [1, 1.0, None, None, None, 1, None, [[1, 1, -1, "x"]]],
    [1, 1.0, None, None, None, 1, None, [[None, 1, 0, "x"]]],
    [1, 1.0, None, None, None, 1, None, [[1, 1, 0, "not bytes", 0, 2]]],
    [1, 1.0, None, None, None, 1, None, [[1, 1, 0, b"x", 2, 2]]],
    [1, 1.0, None, None, None, 1, None, [[1, 1, 0, b"x", 0, 1]]],
]


def test_python_refuses_ticks_beyond_2_53_both_ways(lobby: Any) -> None:
    with pytest.raises(ValueError, match="2\\*\\*53"):
        wire.pack_head(0, 1.0, None, None, (0, 2**53, None), wire.pack_body({}))
    with pytest.raises(ProtocolError, match="bad snapshot"):
        wire.unpack_datagram(b"\x02" + msgpack.packb(
            [1, 1.0, None, None, [1, -(2**53), None, {}], 1, None, []]))
    largest = 2**53 - 1
    frame = wire.pack_head(0, 1.0, None, None, (0, largest, None), wire.pack_body({})) \
        + wire.pack_tail(1, None, ())
    assert wire.unpack_datagram(frame).snapshot == wire.Snapshot(0, largest, None, {})
    mesh = Mesh(config(lobby, "ticks"))
    with pytest.raises(ValueError, match="2\\*\\*53"):  # in the game's call, before any I/O
        mesh.send_state({"x": 1}, tick=2**53)
    with netplay.SyncMesh(config(lobby, "ticks-sync")) as sync:  # in the game's thread
        with pytest.raises(ValueError, match="2\\*\\*53"):
            sync.send_state({"x": 1}, tick=-(2**53))
        assert sync.send_state({"x": 1}, tick=2**53 - 1) is False  # nobody to send to


async def test_the_javascript_codec_matches_python_byte_for_byte(lobby: Any) -> None:
    worked = wire.pack_datagram(wire.Datagram(
        7, 1.5, None, 3, wire.Snapshot(4, 120, 2, {"x": 1}), 42, wire.Acks(99, 10, b"\x01"),
        (wire.Record(5, 1, 2, "hi"),)))
    sample = wire.pack_datagram(wire.Datagram(
        65535, 12.5, (1.0, 2.25), 3, wire.Snapshot(9, -4, None, {"p": [1, 2.5, "s", b"\x00"]}),
        77, wire.Acks(77, 2**40, b"\x05"),
        (wire.Record(2**40, 1, 3, {"t": "e"}), wire.Record(None, 2, None, [1, None]),
         wire.Record(6, 1, 0, b"ab", 0, 3))))
    async with chromium(lobby) as browser:
        page = await browser.browser.new_page()
        await page.goto(lobby.http_url + "/healthz")
        out = await page.evaluate("""async ({sample, bad}) => {
            const w = await import("/play/netplay/src/wire.js");
            const s = await import("/play/netplay/src/state.js");
            const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
            const unhex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
            const worked = w.concat([
                w.packHead(7, 1.5, null, 3, [4, 120, 2], w.packBody({x: 1})),
                w.packTail(42, {epoch: 99, cum: 10, bits: Uint8Array.of(1)},
                           [w.packRecord(5, 1, 2, w.packBody("hi"))])]);
            const d = w.unpackDatagram(unhex(sample), 8);
            const again = w.concat([
                w.packHead(d.seq, d.sentAt, d.echo, d.ack,
                           [d.snapshot.seq, d.snapshot.tick, d.snapshot.baseline],
                           w.packBody(d.snapshot.body)),
                w.packTail(d.epoch, d.acks, [
                    w.packRecord(d.records[0].rid, 1, 3, w.packBody(d.records[0].body)),
                    w.packUnreliableRecord(2, w.packBody(d.records[1].body)),
                    w.packFragmentRecord(6, 1, 0, d.records[2].body, 0, 3)])]);
            const verdicts = bad.map((h) => {
                try { w.unpackDatagram(unhex(h), 8); return "accepted"; }
                catch (err) { return err.name; }
            });
            let msTime = null;
            try { w.packHead(0, Date.now(), null, null); } catch (err) { msTime = err.name; }
            const patched = s.patch({p: {x: 1.0, y: 2.0}, hp: 100, tag: "a"},
                                    {p: {x: 1.5}, inv: [0, [1, 2]], tag: []});
            return {worked: hex(worked), again: hex(again), verdicts, msTime, patched,
                    ackedIds: w.ackedIds({cum: 100, bits: Uint8Array.of(0x81, 0, 2)})};
        }""", {"sample": sample.hex(), "bad": [(b"\x02" + msgpack.packb(v)).hex() for v in BAD]
               + ["02ddffffffff", "00950101c0c0c0", "", "02" + "00" * wire.MAX_DATAGRAM]})
    assert bytes.fromhex(out["worked"]) == worked  # docs/wire.md section 17
    assert bytes.fromhex(out["again"]) == sample
    assert out["verdicts"] == ["ProtocolError"] * (len(BAD) + 4)
    assert out["msTime"] == "RangeError"
    assert out["patched"] == {"p": {"x": 1.5, "y": 2}, "hp": 100, "inv": [1, 2]}
    assert out["ackedIds"] == [101, 108, 118]  # docs/wire.md section 7's example


_LANES_SIMULATION = """async ({seed, loss}) => {
    const w = await import("/play/netplay/src/wire.js");
    const L = await import("/play/netplay/src/lanes.js");
    let a = seed >>> 0;  // mulberry32
    const random = () => {
        a = (a + 0x6d2b79f5) >>> 0; let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const specs = L.laneSpecs([{name: "state"}, {name: "events"},
                               {name: "bulk", ordered: false, priority: -1}]);
    const out = new L.Outbound(specs), inbound = new L.Inbound(specs);
    const sent = {1: [], 2: []}, got = {1: [], 2: []};
    for (let i = 0; i < 300; i++) {
        const lane = random() < 0.7 ? 1 : 2;
        const size = random() < 0.1 ? 2500 + Math.floor(random() * 4000) : 10;
        const body = {i, lane, pad: "x".repeat(size)};
        sent[lane].push(i);
        out.push(lane, w.packBody(body));
    }
    let now = 0, inFlight = [], datagrams = 0;
    while ((!out.idle() || inFlight.length) && now < 120) {
        now += 0.005;
        const records = out.take(now, 1100);
        if (records.length) {
            datagrams++;
            const frame = w.concat([w.packHead(0, now, null, null),
                                    w.packTail(out.epoch, null, records)]);
            if (random() >= loss) inFlight.push([now + 0.01 + random() * 0.03, frame]);  // reorders
            if (random() < 0.05) inFlight.push([now + 0.02, frame]);  // duplicates
        }
        const due = inFlight.filter(([t]) => t <= now);
        inFlight = inFlight.filter(([t]) => t > now);
        for (const [, frame] of due) {
            const d = w.unpackDatagram(frame);
            inbound.onEpoch(d.epoch);
            for (const r of d.records) {
                for (const [lane, body] of inbound.receive(r)) got[lane].push(body.i);
            }
        }
        if (due.length && random() >= loss) out.onAcks(inbound.acks(), now + 0.01);
    }
    return {sent, got, resent: out.resent, duplicates: inbound.duplicates, datagrams,
            undelivered: out.undelivered, now};
}"""


async def test_javascript_lanes_deliver_exactly_once_in_order_under_loss(lobby: Any) -> None:
    async with chromium(lobby) as browser:
        page = await browser.browser.new_page()
        await page.goto(lobby.http_url + "/healthz")
        result = await page.evaluate(_LANES_SIMULATION, {"seed": 7, "loss": 0.2})
        # a piece that does not fit its message is dropped and its ordered lane moves on
        bad = await page.evaluate("""async () => {
            const L = await import("/play/netplay/src/lanes.js");
            const inbound = new L.Inbound(L.laneSpecs([{name: "state"}, {name: "events"}]));
            inbound.onEpoch(5);
            const piece = (rid, lseq, index, count) => ({rid, lane: 1, lseq, index, count,
                                                          body: new Uint8Array([0x91])});
            const delivered = [];
            delivered.push(...inbound.receive(piece(0, 0, 0, 2)));
            let error = null;
            try { inbound.receive(piece(1, 0, 1, 3)); }  // count differs: bad
            catch (err) { error = err.name; delivered.push(...err.delivered); }
            const next = {rid: 2, lane: 1, lseq: 1, body: "next", index: 0, count: 0};
            delivered.push(...inbound.receive(next));
            const acked = inbound.acks();
            inbound.onEpoch(6);  // a new epoch: a new stream
            return {error, delivered, cum: acked.cum, after: inbound.acks().cum};
        }""")
    assert result["got"]["1"] == result["sent"]["1"]  # ordered lane: exactly once, in order
    assert sorted(result["got"]["2"]) == result["sent"]["2"]  # unordered: exactly once
    assert result["resent"] > 0 and result["duplicates"] > 0 and result["undelivered"] == 0
    assert bad == {"error": "BadMessage", "delivered": [[1, "next"]], "cum": 3, "after": 0}


async def test_javascript_deltas_agree_with_python_both_ways(lobby: Any) -> None:
    import random

    from netplay.delta import diff, patch

    rng = random.Random(13)

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if depth < 3 and roll < 0.3:
            return {f"k{rng.randrange(6)}": value(depth + 1) for _ in range(rng.randrange(4))}
        if depth < 3 and roll < 0.45:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return rng.choice([None, True, rng.randrange(-5, 5), round(rng.uniform(-9, 9), 2),
                           "s" + str(rng.randrange(3))])

    def mutate(old: Any) -> Any:
        if isinstance(old, dict) and old and rng.random() < 0.8:
            new = dict(old)
            key = rng.choice(list(new))
            if rng.random() < 0.2:
                del new[key]
            else:
                new[key] = mutate(new[key])
            if rng.random() < 0.2:
                new[f"n{rng.randrange(3)}"] = value(2)
            return new
        if isinstance(old, list) and old and rng.random() < 0.8:
            new_list = list(old)
            i = rng.randrange(len(new_list))
            new_list[i] = mutate(new_list[i])
            return new_list
        return value(1)

    cases = []
    for _ in range(300):
        old = {"root": value()}
        new = mutate(old)
        cases.append([old, diff(old, new), new])
    async with chromium(lobby) as browser:
        page = await browser.browser.new_page()
        await page.goto(lobby.http_url + "/healthz")
        patched, ops = await page.evaluate("""async (cases) => {
            const s = await import("/play/netplay/src/state.js");
            return [cases.map(([old, op]) => s.patch(old, op)),
                    cases.map(([old, , now]) => s.diff(old, now))];
        }""", cases)
        encoder = await page.evaluate("""async () => {
            const s = await import("/play/netplay/src/state.js");
            const e = new s.DeltaEncoder();
            const first = e.encode(0, {x: 1});            // nothing acknowledged: whole
            const unknownAck = e.ack(7);                   // never sent: ignored
            e.ack(0);
            const second = e.encode(1, {x: 2, y: 1});     // against 0
            const steps = [];
            for (let seq = 2; seq < 40; seq++) steps.push(e.encode(seq, {x: seq})[0]);
            return {first, unknownAck, second, steps};
        }""")
    assert encoder["first"] == [None, {"x": 1}] and encoder["unknownAck"] is False
    assert encoder["second"] == [0, {"x": 2, "y": 1}]
    # baseline 0 is used while at most 32 seqs old, then snapshots go whole
    assert encoder["steps"] == [0] * 31 + [None] * 7
    for (old, op, new), got, js_op in zip(cases, patched, ops, strict=True):
        assert got == new, (old, op)  # JavaScript applies Python's deltas
        assert patch(old, js_op) == new, (old, js_op)  # and Python applies JavaScript's


async def test_javascript_pacer_follows_queueing_delay_like_python(lobby: Any) -> None:
    from netplay.congestion import Pacer

    script = [(0.0, 0.002), (0.03, 0.002), (0.06, 0.030), (0.09, 0.031), (0.12, 0.002),
              (0.15, 0.002), (0.18, 0.002)]
    python = Pacer()
    expected = []
    for now, rtt in script:
        python.mark_limited()
        python.on_rtt(rtt, now)
        expected.append(python.rate)
    async with chromium(lobby) as browser:
        page = await browser.browser.new_page()
        await page.goto(lobby.http_url + "/healthz")
        got = await page.evaluate("""async (script) => {
            const { Pacer } = await import("/play/netplay/src/pacer.js");
            const p = new Pacer(), rates = [];
            for (const [now, rtt] of script) {
                p.markLimited(); p.onRtt(rtt, now); rates.push(p.rate);
            }
            const bucket = new Pacer();
            const full = bucket.available(0);
            bucket.spend(20000);
            return {rates, full, wait: bucket.wait(1100, 0), later: bucket.available(0.1)};
        }""", script)
    assert got["rates"] == pytest.approx(expected)
    assert expected[-1] != expected[0]  # the script moved the rate both ways
    assert got["full"] == 8800 and got["wait"] > 0 and got["later"] == 8800
