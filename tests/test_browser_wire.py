"""The JavaScript client's wire codec against Python's, in real Chromium; and the numeric rules
of docs/wire.md section 3 on the Python side (ticks within 2^53)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

import netplay
from netplay import wire
from netplay.errors import ProtocolError
from netplay.mesh import Mesh

from browser_helpers import chromium
from mesh_helpers import config

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
