"""SnapshotBuffer: newest wins, stale and duplicate snapshots, loss from sequence gaps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplay.errors import ProtocolError
from netplay.seq import SEQ_MOD
from netplay.snapshots import Arrival, SnapshotBuffer, Verdict

A, S, D = Verdict.ACCEPTED, Verdict.STALE, Verdict.DUPLICATE


def feed(buf: SnapshotBuffer, seqs: list[int]) -> list[Verdict]:
    return [buf.push(s, i, float(i), 100.0 + i) for i, s in enumerate(seqs)]


@pytest.mark.parametrize(
    ("seqs", "verdicts", "latest", "counts"),
    [
        # counts: received, accepted, stale, duplicates, lost
        ([0, 1, 2], [A, A, A], 2, (3, 3, 0, 0, 0)),
        ([5, 5], [A, D], 5, (1, 1, 0, 1, 0)),
        ([0, 2, 1], [A, A, S], 2, (3, 2, 1, 0, 0)),  # late packet fills the gap
        ([0, 3], [A, A], 3, (2, 2, 0, 0, 2)),
        ([0, 3, 1, 1], [A, A, S, D], 3, (3, 2, 1, 1, 1)),
        ([65534, 65535, 0, 1], [A, A, A, A], 1, (4, 4, 0, 0, 0)),  # wrap
        ([65535, 1, 0], [A, A, S], 1, (3, 2, 1, 0, 0)),  # wrap with reorder
        ([1, 0], [A, S], 1, (2, 1, 1, 0, 0)),  # before the first: not a loss to take back
        ([1, 0, 0], [A, S, D], 1, (2, 1, 1, 1, 0)),
        ([10, 10, 9, 12, 11, 12], [A, D, S, A, S, D], 12, (4, 2, 2, 2, 0)),
    ],
)
def test_table(
    seqs: list[int],
    verdicts: list[Verdict],
    latest: int,
    counts: tuple[int, int, int, int, int],
) -> None:
    buf = SnapshotBuffer()
    assert feed(buf, seqs) == verdicts
    assert buf.latest is not None and buf.latest.seq == latest
    assert (buf.received, buf.accepted, buf.stale, buf.duplicates, buf.lost) == counts


def test_empty() -> None:
    buf = SnapshotBuffer()
    assert buf.latest is None
    assert buf.loss_ratio == 0.0
    assert (buf.received, buf.stale, buf.duplicates, buf.lost) == (0, 0, 0, 0)


def test_latest_holds_the_newest_envelope_and_no_state() -> None:
    buf = SnapshotBuffer()
    buf.push(7, 70, 1.5, 2.0)
    buf.push(9, 90, 1.6, 2.1)
    buf.push(8, 80, 1.55, 2.2)  # stale: not current
    assert buf.latest == Arrival(9, 90, 1.6, 2.1)
    buf.push(10, 100, 1.7, 2.3)
    assert buf.latest == Arrival(10, 100, 1.7, 2.3)
    assert not hasattr(buf.latest, "payload")  # states live in the interpolation buffer


def test_loss_ratio_over_recent_window() -> None:
    buf = SnapshotBuffer(loss_window=10)
    feed(buf, [0, 2, 4, 6, 8])  # 9 expected, 5 received
    assert buf.loss_ratio == pytest.approx(4 / 9)
    feed(buf, list(range(9, 30)))  # the window now holds only received seqs
    assert buf.loss_ratio == 0.0
    assert buf.lost == 4


def test_big_jump_counts_loss_and_old_arrivals_are_stale() -> None:
    buf = SnapshotBuffer(window=16, loss_window=16)
    feed(buf, [0, 1000])
    assert buf.lost == 999
    assert buf.loss_ratio == pytest.approx(15 / 16)
    assert buf.push(500, 0, 0.0, 0.0) is S  # beyond the window: stale, no correction
    assert buf.lost == 999


def test_half_space_apart_is_stale() -> None:
    buf = SnapshotBuffer()
    feed(buf, [0])
    assert buf.push(SEQ_MOD // 2, 0, 0.0, 0.0) is S
    assert buf.latest is not None and buf.latest.seq == 0


def test_reset() -> None:
    buf = SnapshotBuffer()
    feed(buf, [5, 9])
    buf.reset()
    assert buf.latest is None and buf.lost == 0 and buf.received == 0
    assert feed(buf, [0]) == [A]


@pytest.mark.parametrize(
    ("seq", "tick", "sent_at", "match"),
    [
        (-1, 0, 0.0, "sequence"),
        (SEQ_MOD, 0, 0.0, "sequence"),
        ("1", 0, 0.0, "sequence"),
        (1.0, 0, 0.0, "sequence"),
        (1, "0", 0.0, "tick"),
        (1, 0.5, 0.0, "tick"),
        (1, 0, math.nan, "timestamp"),
        (1, 0, math.inf, "timestamp"),
        (1, 0, "now", "timestamp"),
    ],
)
def test_malformed_envelope(seq: object, tick: object, sent_at: object, match: str) -> None:
    buf = SnapshotBuffer()
    with pytest.raises(ProtocolError, match=match):
        buf.push(seq, tick, sent_at, 0.0)  # type: ignore[arg-type]
    assert buf.received == 0


@pytest.mark.parametrize(
    "kwargs", [{"loss_window": 0}, {"window": 8, "loss_window": 9}]
)
def test_bad_config(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SnapshotBuffer(**kwargs)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """Seqs start..start+n-1 (wrapping), some dropped, some duplicated, locally reordered."""
    start = draw(st.integers(0, SEQ_MOD - 1))
    n = draw(st.integers(1, 120))
    order: list[tuple[float, int]] = []
    for i in range(n):
        copies = draw(st.sampled_from([0, 1, 1, 1, 2]))
        for _ in range(copies):
            order.append((i + draw(st.floats(0, 8)), i))
    order.sort()
    return start, [(start + i) % SEQ_MOD for _, i in order]


@given(deliveries())
def test_counters_are_consistent(case: tuple[int, list[int]]) -> None:
    start, seqs = case
    buf = SnapshotBuffer()
    verdicts = []
    current: list[int] = []  # the current snapshot after each accepted push
    for i, s in enumerate(seqs):
        verdicts.append(buf.push(s, i, float(i), 100.0 + i))
        if verdicts[-1] is A:
            assert buf.latest is not None
            current.append((buf.latest.seq - start) % SEQ_MOD)
    distinct = set(seqs)
    assert buf.received == len(distinct)
    assert buf.duplicates == len(seqs) - len(distinct) == verdicts.count(D)
    assert buf.accepted + buf.stale == buf.received
    if not seqs:
        assert buf.latest is None
        return
    rel = sorted((s - start) % SEQ_MOD for s in distinct)
    first = (seqs[0] - start) % SEQ_MOD
    newest = rel[-1]
    assert buf.latest is not None and (buf.latest.seq - start) % SEQ_MOD == newest
    # Every seq from the first arrival to the newest that never arrived is lost.
    assert buf.lost == sum(1 for i in range(first, newest + 1) if i not in set(rel))
    assert 0.0 <= buf.loss_ratio <= 1.0
    # Accepted snapshots are strictly increasing in sequence order.
    assert current == sorted(set(current))
