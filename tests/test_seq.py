"""Wrap-safe 16-bit sequence numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplay.seq import SEQ_HALF, SEQ_MOD, is_seq, next_seq, seq_diff, seq_gt

seqs = st.integers(min_value=0, max_value=SEQ_MOD - 1)


def uint16_gt(a: int, b: int) -> bool:
    """aiortc's utils.uint16_gt, copied as the reference."""
    half_mod = 0x8000
    return ((a < b) and ((b - a) > half_mod)) or ((a > b) and ((a - b) < half_mod))


@pytest.mark.parametrize(
    ("s", "expected"), [(0, 1), (1, 2), (65534, 65535), (65535, 0)]
)
def test_next_seq_wraps(s: int, expected: int) -> None:
    assert next_seq(s) == expected


@pytest.mark.parametrize(
    ("a", "b", "gt", "diff"),
    [
        (1, 0, True, 1),
        (0, 1, False, -1),
        (5, 5, False, 0),
        (0, 65535, True, 1),  # wrapped
        (65535, 0, False, -1),
        (10, 65530, True, 16),
        (32767, 0, True, 32767),
        (32768, 0, False, 32768),  # exactly half apart: order unknown
        (0, 32768, False, 32768),
        (32769, 0, False, -32767),
    ],
)
def test_table(a: int, b: int, gt: bool, diff: int) -> None:
    assert seq_gt(a, b) is gt
    assert seq_diff(a, b) == diff


@given(seqs, seqs)
def test_matches_aiortc_uint16_gt(a: int, b: int) -> None:
    assert seq_gt(a, b) == uint16_gt(a, b)


@given(seqs, seqs)
def test_diff_range_and_consistency(a: int, b: int) -> None:
    d = seq_diff(a, b)
    assert -SEQ_HALF < d <= SEQ_HALF
    assert (b + d) % SEQ_MOD == a
    assert seq_gt(a, b) == (0 < d < SEQ_HALF)


@given(seqs, st.integers(min_value=1, max_value=SEQ_HALF - 1))
def test_ahead_is_newer(a: int, k: int) -> None:
    b = (a + k) % SEQ_MOD
    assert seq_gt(b, a)
    assert not seq_gt(a, b)
    assert seq_diff(b, a) == k


@pytest.mark.parametrize("bad", [-1, SEQ_MOD, 1.0, "1", None, True])
def test_bad_input_raises(bad: object) -> None:
    assert not is_seq(bad)
    with pytest.raises(ValueError, match="sequence number"):
        next_seq(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sequence number"):
        seq_gt(0, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sequence number"):
        seq_diff(bad, 0)  # type: ignore[arg-type]


@given(st.integers(0, SEQ_MOD - 1), st.integers(0, SEQ_MOD - 1))
def test_unchecked_forms_agree_with_the_checked_ones(a: int, b: int) -> None:
    from netplay.seq import ahead, forward, newer

    assert ahead(a, b) == seq_diff(a, b)
    assert newer(a, b) == seq_gt(a, b)
    assert forward(a, b) == (a - b) % SEQ_MOD
