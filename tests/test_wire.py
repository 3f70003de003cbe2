"""Datagram format (wire version 2): round trips, the worked example, rejection of bad input."""

from __future__ import annotations

import threading

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplay import wire
from netplay.errors import ProtocolError

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=5),
    max_leaves=20,
)
ids = st.integers(0, wire.MAX_ID - 1)


@given(values, values, ids, ids, st.integers(1, wire.MAX_EPOCH - 1))
def test_datagram_round_trip(state: object, body: object, rid: int, lseq: int,
                             epoch: int) -> None:
    datagram = wire.Datagram(
        seq=65535, sent_at=12.5, echo=(1.0, 2.25), ack=3,
        snapshot=wire.Snapshot(9, -4, None, state), epoch=epoch,
        acks=wire.Acks(epoch, rid, b"\x05"),
        records=(wire.Record(rid, 1, lseq, body), wire.Record(None, 2, None, body),
                 wire.Record(rid, 1, lseq, b"piece", 2, 3)))
    assert wire.unpack_datagram(wire.pack_datagram(datagram), lanes=3) == datagram


def test_bare_heartbeat_round_trip_and_parts_join_to_the_same_bytes() -> None:
    bare = wire.Datagram(0, 1.0)
    frame = wire.pack_datagram(bare)
    assert wire.unpack_datagram(frame) == bare
    assert frame == wire.pack_head(0, 1.0, None, None) + wire.pack_tail(1, None, ())


def test_worked_example_of_docs_wire_md() -> None:
    """The example datagram in docs/wire.md, byte for byte."""
    frame = (wire.pack_head(7, 1.5, None, 3, (4, 120, 2), wire.pack_body({"x": 1}))
             + wire.pack_tail(42, wire.Acks(99, 10, b"\x01"),
                              [wire.pack_record(5, 1, 2, wire.pack_body("hi"))]))
    assert frame.hex(" ") == (
        "02 98 07 cb 3f f8 00 00 00 00 00 00 c0 03 94 04 78 02 81 a1 78 01 2a 93 63 0a c4 01 "
        "01 91 94 05 01 02 a2 68 69")
    datagram = wire.unpack_datagram(frame)
    assert datagram.snapshot == wire.Snapshot(4, 120, 2, {"x": 1})
    assert datagram.acks is not None and datagram.acks.received() == [11]
    assert datagram.records == (wire.Record(5, 1, 2, "hi"),)


def test_acks_bits_list_received_ids_past_cum() -> None:
    assert wire.Acks(1, 100, bytes([0b1000_0001, 0, 0b10])).received() == [101, 108, 118]
    assert wire.Acks(1, 0).received() == []


def test_datagram_heads_packed_from_several_threads_at_once_stay_intact() -> None:
    body = wire.pack_body({"x": list(range(50))})
    frames: dict[int, set[bytes]] = {}

    def work(k: int) -> None:
        got = frames.setdefault(k, set())
        for _ in range(2000):
            got.add(wire.pack_head(k, k + 0.5, (1.0, 2.0), k, (k, k, None), body))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, got in frames.items():
        expected = wire.pack_datagram(wire.Datagram(
            k, k + 0.5, (1.0, 2.0), k, wire.Snapshot(k, k, None, {"x": list(range(50))})))
        assert {frame + wire.pack_tail(1, None, ()) for frame in got} == {expected}


def fields(seq: object = 1, sent_at: object = 1.0, echo: object = None, ack: object = None,
           snap: object = None, epoch: object = 1, acks: object = None,
           records: object = ()) -> list[object]:
    return [seq, sent_at, echo, ack, snap, epoch, acks,
            list(records) if isinstance(records, tuple) else records]


@pytest.mark.parametrize("value,match", [
    ([1, 2.0, None, None], "8-element"),
    ({"seq": 1}, "8-element"),
    (fields(seq=65536), "bad seq"),
    (fields(seq=True), "bad seq"),
    (fields(sent_at="now"), "bad seq or sent_at"),
    (fields(sent_at=float("nan")), "bad seq or sent_at"),
    (fields(sent_at=1e300), "bad seq or sent_at"),
    (fields(echo=[1.0]), "bad echo"),
    (fields(ack=-1), "bad ack"),
    (fields(snap=[1, 2, None]), "bad snapshot"),
    (fields(snap=[1, 2.5, None, {}]), "bad snapshot"),
    (fields(snap=[1, 2, 70000, {}]), "bad snapshot"),
    (fields(epoch=0), "bad epoch"),
    (fields(epoch=2**31), "bad epoch"),
    (fields(acks=[1, 2]), "bad acks"),
    (fields(acks=[1, -2, b""]), "bad acks"),
    (fields(acks=[1, 2, b"\x00" * 300]), "bad acks"),
    (fields(records={}), "records is not an array"),
    (fields(records=[[1, 2]]), "4- or 6-element"),
    (fields(records=[[1, 300, 0, "x"]]), "unknown lane"),
    (fields(records=[[2**53, 1, 0, "x"]]), "bad id"),
    (fields(records=[[1, 1, -1, "x"]]), "bad id"),
    (fields(records=[[None, 1, 0, "x"]]), "unreliable record with"),
    (fields(records=[[1, 1, 0, "not bytes", 0, 2]]), "bad piece"),
    (fields(records=[[1, 1, 0, b"x", 2, 2]]), "bad piece"),
    (fields(records=[[1, 1, 0, b"x", 0, 1]]), "bad piece"),
])
def test_bad_datagrams_are_rejected(value: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        wire.unpack_datagram(b"\x02" + msgpack.packb(value), lanes=8)


def test_hostile_sizes_and_versions_are_rejected_without_allocating() -> None:
    # a header claiming 2**32-1 array elements in a 6-byte packet
    with pytest.raises(ProtocolError, match="not a msgpack value"):
        wire.unpack_datagram(b"\x02\xdd\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="not a msgpack value"):
        wire.unpack_body(b"\xc6\xff\xff\xff\xffabc")  # bin32 of 4 GiB
    with pytest.raises(ProtocolError, match="over the limit"):
        wire.unpack_datagram(b"\x02" + b"\x00" * wire.MAX_DATAGRAM)
    with pytest.raises(ProtocolError, match="wire version 0"):
        wire.unpack_datagram(b"\x00\x95\x01\x01\xc0\xc0\xc0")  # a version-1 state frame
    with pytest.raises(ProtocolError, match="empty"):
        wire.unpack_datagram(b"")


def test_unsendable_values_raise_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="msgpack values only"):
        wire.pack_body({"x": object()})
    with pytest.raises(TypeError, match="msgpack values only"):
        wire.pack_body(2**70)
