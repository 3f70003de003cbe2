"""The name-label layout of the demo (``netplay_demo.layout``): pure geometry, no pygame."""

from __future__ import annotations

import itertools
import random

import pytest

from netplay_demo.layout import Box, Label, place_labels

ARENA = Box(20, 20, 760, 600)
SIZE = 26.0


def square(x: float, y: float) -> Box:
    return Box(x - SIZE / 2, y - SIZE / 2, SIZE, SIZE)


def overlapping_pairs(boxes: list[Box]) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
            if a.intersects(b)]


def test_box_geometry() -> None:
    a = Box(0, 0, 10, 10)
    assert a.intersects(Box(9, 9, 5, 5)) and a.overlap(Box(9, 9, 5, 5)) == 1
    assert not a.intersects(Box(10, 0, 5, 5))  # touching edges do not overlap
    assert a.overlap(Box(20, 20, 1, 1)) == 0
    assert Box(-5, 15, 10, 10).clamped(Box(0, 0, 20, 20)) == Box(0, 10, 10, 10)
    assert Box(2, 2, 3, 3).inside(a) and not Box(8, 8, 3, 3).inside(a)


def test_a_lone_label_sits_centred_above_its_square() -> None:
    [spot] = place_labels([Label(square(400, 300), 60, 14)], ARENA)
    assert not spot.leader
    assert spot.box.center[0] == 400 and spot.box.bottom <= 300 - SIZE / 2
    assert spot.box.bottom >= 300 - SIZE / 2 - 5  # right above, not far away


def test_a_square_at_the_top_edge_gets_its_label_below() -> None:
    [spot] = place_labels([Label(square(400, 20 + SIZE / 2), 60, 14)], ARENA)
    assert spot.box.inside(ARENA)
    assert spot.box.y >= 20 + SIZE  # under the square, not on it


def test_two_squares_side_by_side_get_labels_that_do_not_overlap() -> None:
    # The README's screenshot: two squares a few pixels apart, both labels "above" collided.
    labels = [Label(square(400, 300), 70, 14), Label(square(430, 300), 70, 14)]
    spots = [p.box for p in place_labels(labels, ARENA)]
    assert overlapping_pairs(spots) == []
    assert all(s.inside(ARENA) for s in spots)
    # The first (the local player) keeps the best spot: centred above.
    assert spots[0].center[0] == 400 and spots[0].bottom <= 300 - SIZE / 2


def test_labels_leave_the_other_squares_uncovered_when_there_is_room() -> None:
    squares = [square(400, 300), square(400, 300 - SIZE - 8), square(470, 300)]
    labels = [Label(s, 60, 14) for s in squares]
    spots = [p.box for p in place_labels(labels, ARENA)]
    assert overlapping_pairs(spots) == []
    for i, spot in enumerate(spots):
        assert not any(spot.intersects(s) for s in squares), (i, spot)


@pytest.mark.parametrize("seed", range(100))
def test_a_crowd_of_eight_never_has_overlapping_labels(seed: int) -> None:
    rng = random.Random(seed)
    cx, cy = rng.uniform(60, 740), rng.uniform(60, 580)
    squares = [square(min(max(cx + rng.uniform(-40, 40), 33), 767),
                      min(max(cy + rng.uniform(-40, 40), 33), 607)) for _ in range(8)]
    labels = [Label(s, rng.uniform(30, 110), 14) for s in squares]
    placements = place_labels(labels, ARENA)
    spots = [p.box for p in placements]
    assert overlapping_pairs(spots) == [], (seed, spots)
    for label, spot in zip(labels, spots, strict=True):
        assert spot.inside(ARENA)
        assert not spot.intersects(label.anchor)  # a label never hides its own square
        assert (spot.w, spot.h) == (label.w, label.h)


def test_labels_pushed_away_from_their_square_are_marked_for_a_leader_line() -> None:
    # Eight squares in a tight row: not every label fits next to its square.
    squares = [square(300 + i * (SIZE + 2), 300) for i in range(8)]
    placements = place_labels([Label(s, 90, 14) for s in squares], ARENA)
    assert overlapping_pairs([p.box for p in placements]) == []
    assert any(p.leader for p in placements)
    assert not placements[0].leader
