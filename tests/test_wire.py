"""Data-channel packet format: round trips, fragmentation, and rejection of bad input."""

from __future__ import annotations

import struct

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


@given(values)
def test_message_round_trip(body: object) -> None:
    frames = wire.split_message(wire.pack_body(body), 16, message_id=7)
    reassembler = wire.Reassembler(max_size=1 << 20)
    results = [reassembler.feed(f) for f in frames]
    assert [done for done, _ in results] == [False] * (len(frames) - 1) + [True]
    assert results[-1][1] == body


def test_big_message_is_fragmented_and_reassembled() -> None:
    body = {"blob": bytes(range(256)) * 1000, "n": 1}
    frames = wire.split_message(wire.pack_body(body), 16_384, message_id=2**40)
    assert len(frames) == 16 and all(len(f) <= 16_384 + 13 for f in frames)
    assert {f[0] for f in frames} == {wire.FRAGMENT}
    reassembler = wire.Reassembler(max_size=1 << 20)
    for frame in frames[:-1]:
        assert reassembler.feed(frame) == (False, None)
    assert reassembler.feed(frames[-1]) == (True, body)
    assert wire.split_message(wire.pack_body("small"), 16_384, 1) == [b"\x01\xa5small"]


def test_pieces_of_any_size_reassemble() -> None:
    payload = wire.pack_body({"blob": b"q" * 5000})
    offsets = [0, 1, 1100, 1101, 4000, len(payload)]
    r = wire.Reassembler(max_size=10_000)
    results = [r.feed(wire.fragment(payload, 9, start, end - start))
               for start, end in zip(offsets, offsets[1:])]
    assert results[-1] == (True, {"blob": b"q" * 5000})
    assert all(done is False for done, _ in results[:-1])


def test_reassembler_rejects_misplaced_and_oversized_fragments() -> None:
    payload = wire.pack_body(b"x" * 100)
    frames = wire.split_message(payload, 30, message_id=1)
    r = wire.Reassembler(max_size=1000)
    with pytest.raises(ProtocolError, match="out of place"):
        r.feed(frames[1])                       # starts in the middle
    r.feed(frames[0])
    with pytest.raises(ProtocolError, match="out of place"):
        r.feed(frames[2])                       # skips one
    other = wire.split_message(wire.pack_body(b"y" * 100), 30, message_id=2)
    r.feed(frames[0])
    with pytest.raises(ProtocolError, match="out of place"):
        r.feed(other[1])                        # another message's fragment
    r.feed(frames[0])
    with pytest.raises(ProtocolError, match="out of place"):
        r.feed(b"\x02" + struct.pack("!III", 1, len(payload), 30) + b"x" * 100)  # past the end
    r.feed(frames[0])
    with pytest.raises(ProtocolError, match="inside a fragmented"):
        r.feed(wire.pack_message("whole"))
    small = wire.Reassembler(max_size=50)
    with pytest.raises(ProtocolError, match="over the 50-byte limit"):
        small.feed(frames[0])                   # refused before anything is buffered
    with pytest.raises(ProtocolError, match="over the limit"):
        small.feed(wire.pack_message(b"z" * 100))
    for bad, match in ((b"", "empty"), (b"\x09", "unknown frame kind"),
                       (b"\x02\x00", "truncated"), (b"\x01\xc1", "not a msgpack value"),
                       (b"\x01\x01\x02", "not a msgpack value")):
        with pytest.raises(ProtocolError, match=match):
            wire.Reassembler(100).feed(bad)
    # after errors the reassembler still works
    assert r.feed(wire.pack_message([1])) == (True, [1])


@given(values, st.integers(0, 65535), st.one_of(st.none(), st.integers(0, 65535)),
       st.booleans(), st.integers(-2**40, 2**40))
def test_state_frame_with_a_packed_body_is_pack_state(body: object, seq: int, ack: int | None,
                                                      echo: bool, tick: int) -> None:
    e = (1.5, 2.25) if echo else None
    for baseline in (None, (seq + 7) % 65536):
        datagram = wire.StateDatagram(seq, 3.75, e, ack, wire.Snapshot(9, tick, baseline, body))
        frame = wire.pack_state_frame(seq, 3.75, e, ack, (9, tick, baseline),
                                      wire.pack_body(body))
        assert frame == wire.pack_state(datagram)
        assert wire.unpack_state(frame) == wire.unpack_state(wire.pack_state(datagram))
    assert wire.pack_state_frame(seq, 3.75, e, ack) == wire.pack_state(
        wire.StateDatagram(seq, 3.75, e, ack))


def test_state_frames_packed_from_several_threads_at_once_stay_intact() -> None:
    import threading

    body = wire.pack_body({"x": list(range(50))})
    frames: dict[int, set[bytes]] = {}

    def work(k: int) -> None:
        got = frames.setdefault(k, set())
        for _ in range(2000):
            got.add(wire.pack_state_frame(k, k + 0.5, (1.0, 2.0), k, (k, k, None), body))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, got in frames.items():
        assert got == {wire.pack_state(wire.StateDatagram(
            k, k + 0.5, (1.0, 2.0), k, wire.Snapshot(k, k, None, {"x": list(range(50))})))}


def test_state_datagram_round_trip() -> None:
    full = wire.StateDatagram(65535, 12.5, (1.0, 2.25), 3, wire.Snapshot(9, -4, None, {"x": [1]}))
    assert wire.unpack_state(wire.pack_state(full)) == full
    bare = wire.StateDatagram(0, 1.0)
    assert wire.unpack_state(wire.pack_state(bare)) == bare
    delta = wire.StateDatagram(1, 2, None, None, wire.Snapshot(10, 5, 9, {"x": 2}))
    assert wire.unpack_state(wire.pack_state(delta)).snapshot == delta.snapshot


@pytest.mark.parametrize("fields,match", [
    ([1, 2.0, None, None], "5-element"),
    ([65536, 1.0, None, None, None], "bad seq"),
    ([True, 1.0, None, None, None], "bad seq"),
    ([1, "now", None, None, None], "bad seq or sent_at"),
    ([1, float("nan"), None, None, None], "bad seq or sent_at"),
    ([1, 1e300, None, None, None], "bad seq or sent_at"),
    ([1, 1.0, [1.0], None, None], "bad echo"),
    ([1, 1.0, None, -1, None], "bad ack"),
    ([1, 1.0, None, None, [1, 2, None]], "bad snapshot"),
    ([1, 1.0, None, None, [1, 2.5, None, {}]], "bad snapshot"),
    ([1, 1.0, None, None, [1, 2, 70000, {}]], "bad snapshot"),
    ({"seq": 1}, "5-element"),
])
def test_bad_state_datagrams_are_rejected(fields: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        wire.unpack_state(b"\x00" + msgpack.packb(fields))


def test_hostile_sizes_are_rejected_without_allocating() -> None:
    # a header claiming 2**32-1 array elements in a 6-byte packet
    with pytest.raises(ProtocolError, match="not a msgpack value"):
        wire.unpack_state(b"\x00\xdd\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="not a msgpack value"):
        wire.unpack_body(b"\xc6\xff\xff\xff\xffabc")  # bin32 of 4 GiB
    with pytest.raises(ProtocolError, match="over the limit"):
        wire.unpack_state(b"\x00" + b"\x00" * wire.MAX_STATE_DATAGRAM)
    with pytest.raises(ProtocolError, match="not a state datagram"):
        wire.unpack_state(b"\x01\x90")


def test_unsendable_values_raise_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="msgpack values only"):
        wire.pack_body({"x": object()})
    with pytest.raises(TypeError, match="msgpack values only"):
        wire.pack_body(2**70)


def test_bye_frame() -> None:
    frame = wire.pack_bye("kicked")
    assert frame[0] == wire.BYE and wire.unpack_body(frame[1:]) == "kicked"
