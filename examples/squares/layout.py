"""Where the name labels of the squares go, so that no two overlap: pure geometry, no pygame.

:func:`place_labels` is a greedy layout (the one map labellers start from). Labels are placed in
the order given (the local player first, so it always gets its best spot). Each label tries the
spots around its square in order of preference (above, below, right, left, then further above
and below in steps of one label height, joined to the square by a leader line) and takes the
first that stays inside the bounds and overlaps no label placed before it, preferring spots that
also leave the other squares uncovered. When all those are taken (a crowd in a corner), it
searches a grid around its square, nearest first; only when nothing there is free either (more
labels than room) does a label go where it overlaps least.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Box", "Label", "Placement", "place_labels"]

GAP = 3.0
"""Space between a square and its label."""
STACK = 8
"""How many label heights a label may move further above or below its square."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle: left, top, width, height (screen pixels)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        """The right edge."""
        return self.x + self.w

    @property
    def bottom(self) -> float:
        """The bottom edge."""
        return self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        """The centre point."""
        return self.x + self.w / 2, self.y + self.h / 2

    def intersects(self, other: Box) -> bool:
        """Whether the two boxes share some area (touching edges do not count)."""
        return (self.x < other.right and other.x < self.right
                and self.y < other.bottom and other.y < self.bottom)

    def overlap(self, other: Box) -> float:
        """The area the two boxes share."""
        w = min(self.right, other.right) - max(self.x, other.x)
        h = min(self.bottom, other.bottom) - max(self.y, other.y)
        return w * h if w > 0 and h > 0 else 0.0

    def inside(self, bounds: Box) -> bool:
        """Whether this box lies entirely within ``bounds``."""
        return (bounds.x <= self.x and self.right <= bounds.right
                and bounds.y <= self.y and self.bottom <= bounds.bottom)

    def clamped(self, bounds: Box) -> Box:
        """This box moved (not resized) as little as possible to lie within ``bounds``."""
        x = min(max(self.x, bounds.x), bounds.right - self.w)
        y = min(max(self.y, bounds.y), bounds.bottom - self.h)
        return Box(x, y, self.w, self.h)


@dataclass(frozen=True)
class Label:
    """A label to place: the box of the thing it names and the label's size."""

    anchor: Box
    w: float
    h: float


@dataclass(frozen=True)
class Placement:
    """Where a label went; ``leader`` when it sits away from its square (draw a line to it)."""

    box: Box
    leader: bool


def _spots(label: Label, bounds: Box) -> Iterator[tuple[Box, bool]]:
    """Candidate boxes for ``label`` in order of preference, moved inside ``bounds``."""
    a, w, h = label.anchor, label.w, label.h
    cx, cy = a.center
    near = [
        Box(cx - w / 2, a.y - GAP - h, w, h),      # above
        Box(cx - w / 2, a.bottom + GAP, w, h),     # below
        Box(a.right + GAP, cy - h / 2, w, h),      # right
        Box(a.x - GAP - w, cy - h / 2, w, h),      # left
        Box(a.right + GAP, a.y - GAP - h, w, h),   # above right
        Box(a.x - GAP - w, a.y - GAP - h, w, h),   # above left
        Box(a.right + GAP, a.bottom + GAP, w, h),  # below right
        Box(a.x - GAP - w, a.bottom + GAP, w, h),  # below left
    ]
    for box in near:
        yield box.clamped(bounds), False
    for step in range(1, STACK + 1):
        for dx in (0.0, -w / 2 - GAP, w / 2 + GAP, -w - GAP, w + GAP):
            yield Box(cx - w / 2 + dx, a.y - GAP - h * (step + 1), w, h).clamped(bounds), True
            yield Box(cx - w / 2 + dx, a.bottom + GAP + h * step, w, h).clamped(bounds), True


def _search(label: Label, bounds: Box) -> list[tuple[Box, bool]]:
    """The last resort in a dense crowd: spots on a grid around the square, nearest first."""
    a, w, h = label.anchor, label.w, label.h
    cx, cy = a.center
    grid = [Box(cx - w / 2 + i * (w / 2 + GAP), cy - h / 2 + j * h, w, h).clamped(bounds)
            for i in range(-6, 7) for j in range(-20, 21)]
    grid.sort(key=lambda b: (b.center[0] - cx) ** 2 + (b.center[1] - cy) ** 2)
    return [(box, True) for box in grid]


def _first_free(spots: Iterable[tuple[Box, bool]], label: Label, placed: Sequence[Box],
                others: Sequence[Box]) -> tuple[Box, bool] | None:
    """The first spot clear of the placed labels and of the other squares, else the first
    clear of the placed labels only, else None."""
    fallback = None
    for box, leader in spots:
        if box.intersects(label.anchor) or any(box.intersects(p) for p in placed):
            continue
        if not any(box.intersects(a) for a in others):
            return box, leader
        if fallback is None:
            fallback = (box, leader)
    return fallback


def place_labels(labels: Sequence[Label], bounds: Box) -> list[Placement]:
    """Place every label (in the given order of priority); see the module docstring.

    Returns one :class:`Placement` per label, in the same order. Labels never leave ``bounds``
    (a label wider than ``bounds`` is aligned with its left edge).
    """
    placed: list[Box] = []
    out: list[Placement] = []
    anchors = [label.anchor for label in labels]
    for i, label in enumerate(labels):
        others = anchors[:i] + anchors[i + 1:]
        found = (_first_free(_spots(label, bounds), label, placed, others)
                 or _first_free(_search(label, bounds), label, placed, others))
        if found is None:
            spots = list(_spots(label, bounds))
            found = min(spots, key=lambda s: sum(s[0].overlap(p) for p in placed))
        box, leader = found
        placed.append(box)
        out.append(Placement(box, leader))
    return out
