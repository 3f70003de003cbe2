"""Delta compression: diff/patch encoding, round trips, encoder/decoder baselines."""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplay.delta import (
    STALE,
    DeltaDecoder,
    DeltaEncoder,
    copy_state,
    delta_bytes_saved,
    diff,
    packed_size,
    patch,
)
from netplay.errors import ProtocolError
from netplay.seq import seq_gt


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def same(a: Any, b: Any) -> bool:
    """Exact equality: unlike ==, tells 1 from 1.0 from True, -0.0 from 0.0, list from tuple.

    Dict key order is ignored, as == does (a patch appends added keys at the end).
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def test_same_is_strict() -> None:
    assert same({"a": [1, 2.0], "b": None}, {"b": None, "a": [1, 2.0]})
    for a, b in [(1, 1.0), (1, True), (0.0, -0.0), ([1], (1,)), ({"a": 1}, {"a": 1, "b": 2}),
                 ([1, 2], [1]), ({"a": 1}, {"b": 1})]:
        assert not same(a, b)


# -- encoding table --------------------------------------------------------------------------

CASES: list[tuple[str, Any, Any, Any]] = [
    ("changed leaf", {"x": 1, "y": 2}, {"x": 1, "y": 3}, {"y": 3}),
    ("added key", {"x": 1}, {"x": 1, "z": "a"}, {"z": "a"}),
    ("removed key", {"x": 1, "y": 2}, {"x": 1}, {"y": []}),
    ("int key", {1: {"hp": 5}}, {1: {"hp": 4}}, {1: {"hp": 4}}),
    ("nested", {"p": {"a": {"x": 0.5, "y": 1}}}, {"p": {"a": {"x": 0.75, "y": 1}}},
     {"p": {"a": {"x": 0.75}}}),
    ("unchanged dict", {"a": [1, 2]}, {"a": [1, 2]}, {}),
    ("unchanged list", [1, {"a": 2}], [1, {"a": 2}], [1]),
    ("unchanged scalar", 5, 5, 5),
    ("new dict value", {"a": 1}, {"a": {"b": 2}}, {"a": [0, {"b": 2}]}),
    ("new list value", {"a": 1}, {"a": [2]}, {"a": [0, [2]]}),
    ("added empty list", {}, {"a": []}, {"a": [0, []]}),
    ("dict to scalar", {"a": {"b": 1}}, {"a": None}, {"a": None}),
    ("list element", {"l": [1, 2, 3, 4]}, {"l": [1, 2, 9, 4]}, {"l": [1, 2, 9]}),
    ("list most changed", [1, 2, 3], [4, 5, 3], [0, [4, 5, 3]]),
    ("list nested", [{"x": 1}, {"x": 2}], [{"x": 1}, {"x": 3}], [1, 1, {"x": 3}]),
    ("list length", [1, 2], [1, 2, 3], [0, [1, 2, 3]]),
    ("int to float", {"a": 1}, {"a": 1.0}, {"a": 1.0}),
    ("int to bool", {"a": 1}, {"a": True}, {"a": True}),
    ("negative zero", {"a": 0.0}, {"a": -0.0}, {"a": -0.0}),
    ("list to tuple", {"a": [1]}, {"a": (1,)}, {"a": [0, (1,)]}),
    ("top-level type", {"a": 1}, [1], [0, [1]]),
    ("top-level scalar", {"a": 1}, "x", "x"),
]


@pytest.mark.parametrize(("old", "new", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_diff_encoding(old: Any, new: Any, expected: Any) -> None:
    delta = diff(old, new)
    assert same(delta, expected)
    assert same(patch(old, delta), new)
    assert same(patch(old, unpack(pack(delta))), unpack(pack(new)))


def test_tuples_patch_to_tuples() -> None:
    old, new = {"t": (1, 2, 3, 4)}, {"t": (1, 2, 3, 5)}
    result = patch(old, diff(old, new))
    assert result == new and type(result["t"]) is tuple


def test_nan_unchanged_costs_nothing() -> None:
    old = {"a": math.nan, "b": 1}
    assert diff(old, {"a": math.nan, "b": 2}) == {"b": 2}
    assert math.isnan(diff({"a": 1.0}, {"a": math.nan})["a"])


def test_patch_shares_unchanged_subtrees_and_mutates_nothing() -> None:
    old = {"big": {"k": list(range(10))}, "x": 1}
    new = {"big": {"k": list(range(10))}, "x": 2}
    before = pack(old)
    result = patch(old, diff(old, new))
    assert result["big"] is old["big"]
    assert pack(old) == before


@pytest.mark.parametrize(
    ("old", "delta", "match"),
    [
        ({"a": 1}, [], "empty op"),
        (5, {"a": 1}, "dict patch applied to int"),
        ({"a": 1}, {"b": []}, "removal of missing key"),
        ({"a": 1}, {"b": {"c": 1}}, "patch of missing key"),
        ({"a": 1}, {"b": [1, 0, 1]}, "patch of missing key"),
        ({"a": 1}, [7, 1], "unknown op tag"),
        ({"a": 1}, ["0", 1], "unknown op tag"),
        ({"a": 1}, [0.0, 1], "unknown op tag"),
        ({"a": 1}, [0, 1, 2], "replace op has 3 items"),
        ({"a": 1}, [1, 0, 1], "list patch applied to dict"),
        ([1, 2], [1, 0], "index/op pairs"),
        ([1, 2], [1, 2, 5], "out of range"),
        ([1, 2], [1, -1, 5], "out of range"),
        ([1, 2], [1, "0", 5], "out of range"),
        ([[1]], [1, 0, [1, 3, 4]], "out of range"),
    ],
)
def test_malformed_delta(old: Any, delta: Any, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        patch(old, delta)


def test_deeply_nested_delta_is_protocol_error() -> None:
    delta: Any = 1
    old: Any = 0
    for _ in range(5000):
        delta, old = {"a": delta}, {"a": old}
    with pytest.raises(ProtocolError, match="nested too deeply"):
        patch(old, delta)


def test_copy_state_is_deep() -> None:
    state = {"a": [1, {"b": 2}], "t": ({"c": 3},)}
    clone = copy_state(state)
    assert clone == state
    clone["a"][1]["b"] = 9
    clone["t"][0]["c"] = 9
    assert state == {"a": [1, {"b": 2}], "t": ({"c": 3},)}


def test_bytes_saved() -> None:
    state = {"players": {str(i): {"x": float(i), "y": 2.0, "name": "p" * 10} for i in range(8)}}
    new = copy_state(state)
    new["players"]["3"]["x"] = 7.5
    body = diff(state, new)
    assert delta_bytes_saved(new, body) == packed_size(new) - packed_size(body)
    assert delta_bytes_saved(new, body) > 200


# -- hypothesis: arbitrary states ------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
keys = st.text(max_size=4) | st.integers(min_value=-5, max_value=5)
states = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """A variant of ``value`` with a few edits, so diffs have both shared and changed parts."""
    choice = draw(st.integers(0, 9))
    if choice == 0 or depth > 6:
        return draw(states)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            action = draw(st.integers(0, 5))
            if action == 0:
                continue  # removed
            out[k] = draw(mutated(v, depth + 1)) if action == 1 else v
        for k in draw(st.lists(keys, max_size=2)):
            out[k] = draw(states)
        return out
    if isinstance(value, list):
        if draw(st.integers(0, 4)) == 0:
            return value + [draw(states)]
        return [draw(mutated(v, depth + 1)) if draw(st.booleans()) else v for v in value]
    return value if choice < 6 else draw(scalars)


@st.composite
def state_pairs(draw: st.DrawFn) -> tuple[Any, Any]:
    old = draw(states)
    return old, draw(mutated(old))


@settings(deadline=None)  # nested generation can be slow on a loaded machine
@given(state_pairs())
def test_patch_of_diff_is_exactly_new(pair: tuple[Any, Any]) -> None:
    old, new = pair
    old_copy, new_copy = copy_state(old), copy_state(new)
    delta = diff(old, new)
    assert same(patch(old, delta), new)
    # Through the wire: the delta is plain msgpack.
    assert same(patch(unpack(pack(old)), unpack(pack(delta))), new)
    assert same(old, old_copy) and same(new, new_copy)  # inputs not mutated


@settings(deadline=None)  # nested generation can be slow on a loaded machine
@given(states, states)
def test_patch_of_diff_unrelated_states(old: Any, new: Any) -> None:
    assert same(patch(old, diff(old, new)), new)


@settings(deadline=None)  # nested generation can be slow on a loaded machine
@given(states)
def test_diff_of_equal_is_small(state: Any) -> None:
    assert packed_size(diff(state, copy_state(state))) <= max(packed_size(state), 2)


# -- encoder / decoder -----------------------------------------------------------------------


def test_encoder_full_until_acked_then_delta() -> None:
    enc, dec = DeltaEncoder(), DeltaDecoder()
    s0 = {"x": 0, "name": "a"}
    assert enc.encode(0, s0) == (None, s0)
    assert dec.decode(0, None, s0) == s0
    assert dec.last_decoded_seq == 0
    s0["x"] = 99  # the game mutates its state after sending: the encoder kept a copy
    s1 = {"x": 1, "name": "a"}
    assert enc.encode(1, s1) == (None, s1)  # nothing acked yet
    assert enc.ack(0)
    base, body = enc.encode(2, {"x": 2, "name": "a"})
    assert (base, body) == (0, {"x": 2})
    assert dec.decode(2, base, body) == {"x": 2, "name": "a"}
    assert (enc.full_count, enc.delta_count) == (2, 1)


def test_encoder_baseline_too_old_falls_back_to_full() -> None:
    enc = DeltaEncoder(max_baseline_age=3)
    for seq in range(3):
        enc.encode(seq, {"s": seq})
    enc.ack(0)
    assert enc.encode(3, {"s": 3})[0] == 0  # 3 behind: still usable
    assert enc.encode(4, {"s": 4}) == (None, {"s": 4})
    assert enc.acked is None


def test_encoder_ack_rules() -> None:
    enc = DeltaEncoder()
    for seq in (65534, 65535, 0, 1):  # wraps
        enc.encode(seq, {"s": seq})
    assert not enc.ack(7)  # never sent
    assert not enc.ack(-3)
    assert enc.ack(0)
    assert not enc.ack(65535)  # older than the baseline
    assert enc.ack(1)
    assert enc.encode(2, {"s": 2}) == (1, {"s": 2})
    with pytest.raises(ValueError, match="increase"):
        enc.encode(2, {})
    with pytest.raises(ValueError, match="sequence number"):
        enc.encode(70000, {})
    enc.reset()
    assert enc.encode(0, {"s": 0}) == (None, {"s": 0})


def test_decoder_errors() -> None:
    dec = DeltaDecoder(history=4)
    dec.decode(10, None, {"a": 1})
    with pytest.raises(ProtocolError, match="unknown delta baseline 9"):
        dec.decode(11, 9, {})
    with pytest.raises(ProtocolError, match="not older"):
        dec.decode(10, 10, {})
    with pytest.raises(ProtocolError, match="snapshot seq"):
        dec.decode(-1, None, {})
    with pytest.raises(ProtocolError, match="delta baseline"):
        dec.decode(11, "10", {})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="malformed delta"):
        dec.decode(11, 10, {"b": {"c": 1}})
    dec.decode(15, None, {"a": 5})
    with pytest.raises(ProtocolError, match="unknown delta baseline 10"):  # aged out
        dec.decode(16, 10, {})
    assert dec.decode(12, None, {"late": 1}) == {"late": 1}  # late but in range: kept
    assert dec.decode(16, 12, {"late": 2}) == {"late": 2}
    assert dec.last_decoded_seq == 16


def test_decoder_forgets_exactly_the_baselines_out_of_range_late_ones_too() -> None:
    dec = DeltaDecoder(history=4)
    start = 65533  # across the wrap
    seqs = [(start + k) % 65536 for k in (0, 3, 1, 2, 5)]  # 1 and 2 arrive late
    for n, seq in enumerate(seqs):
        dec.decode(seq, None, {"n": n})
    newest = (start + 5) % 65536
    assert dec.last_decoded_seq == newest
    # 4 behind the newest are kept (start+1 .. start+5), start+0 is gone
    for k in (1, 2, 3):
        assert dec.decode((start + 6) % 65536, (start + k) % 65536, {}, copy=False) is not None
    for k in (0, 1):  # start+6 is the newest now: start+1 (a late one) is 5 behind
        with pytest.raises(ProtocolError, match="unknown delta baseline"):
            dec.decode((start + 7) % 65536, (start + k) % 65536, {})
    dec.decode((start + 8) % 65536, None, {"n": 8})
    for k in (1, 2, 3):  # now more than 4 behind: forgotten, the late ones included
        with pytest.raises(ProtocolError, match="unknown delta baseline"):
            dec.decode((start + 9) % 65536, (start + k) % 65536, {})
    assert dec.decode((start + 9) % 65536, (start + 5) % 65536, {"m": 1}) == {"n": 4, "m": 1}


def test_decoder_copy_protects_baselines() -> None:
    dec = DeltaDecoder()
    state = dec.decode(0, None, {"a": {"b": 1}})
    state["a"]["b"] = 100
    assert dec.decode(1, 0, {"c": 2}) == {"a": {"b": 1}, "c": 2}
    shared = dec.decode(2, 1, {}, copy=False)
    assert shared == {"a": {"b": 1}, "c": 2}


@settings(max_examples=60, deadline=None)
@given(st.lists(state_pairs(), min_size=1, max_size=6), st.randoms(use_true_random=False),
       st.integers(0, 65535))
def test_encoder_decoder_round_trip_with_loss(
    pairs: list[tuple[Any, Any]], rnd: random.Random, start: int
) -> None:
    """A stream of states over a lossy, reordering link with lossy acks decodes exactly."""
    enc, dec = DeltaEncoder(max_baseline_age=8), DeltaDecoder(history=16)
    stream = [s for pair in pairs for s in pair] * 4
    in_flight: list[tuple[int, int | None, bytes, Any]] = []
    stale = 0
    for i, state in enumerate(stream):
        seq = (start + i) % 65536
        base, body = enc.encode(seq, state)
        if rnd.random() < 0.7:  # 30% loss
            in_flight.append((seq, base, pack(body), state))
        rnd.shuffle(in_flight)
        while in_flight and rnd.random() < 0.6:
            got_seq, got_base, wire, want = in_flight.pop()
            decoded = dec.decode(got_seq, got_base, unpack(wire))
            if decoded is STALE:  # reordered beyond the history: older than the newest
                assert dec.last_decoded_seq is not None
                assert seq_gt(dec.last_decoded_seq, got_seq)
                stale += 1
                assert dec.stale == stale  # dropped and counted, never raised
                continue
            assert same(decoded, want)
            if rnd.random() < 0.7:  # acks get lost too
                enc.ack(dec.last_decoded_seq)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 32768])
def test_bad_config(bad: int) -> None:
    with pytest.raises(ValueError):
        DeltaEncoder(max_baseline_age=bad)
    with pytest.raises(ValueError):
        DeltaDecoder(history=bad)


def test_a_late_snapshot_whose_baseline_was_forgotten_is_stale_not_an_error() -> None:
    """Found by Hypothesis: a packet reordered beyond the decoder's history."""
    enc, dec = DeltaEncoder(max_baseline_age=8), DeltaDecoder(history=4)
    assert dec.decode(0, None, {"x": 0}) == {"x": 0}
    enc.encode(0, {"x": 0})
    enc.ack(0)
    late = enc.encode(1, {"x": 1})  # a delta against 0
    assert late[0] == 0
    for seq in range(2, 10):  # newer full snapshots push 0 out of the history
        dec.decode(seq, None, {"x": seq})
    assert dec.decode(1, *late) is STALE
    assert dec.stale == 1
    with pytest.raises(ProtocolError, match="unknown delta baseline"):
        dec.decode(11, 0, {"x": 11})  # a newer one with a forgotten baseline is still bad
