"""16-bit wrapping sequence numbers for snapshots and acks.

A snapshot's sequence number takes two bytes on the wire and wraps from 65535 to 0, so
"newer" cannot be ``a > b``. As in RFC 1982 serial-number arithmetic and aiortc's
``utils.uint16_gt``, ``a`` is newer than ``b`` when it is less than half the number space
ahead of it. At 60 snapshots/s the space wraps every 18 minutes, and a packet would have to
arrive more than 9 minutes late to be misjudged.
"""

from __future__ import annotations

from typing import NoReturn, TypeGuard

__all__ = ["SEQ_BITS", "SEQ_HALF", "SEQ_MOD", "ahead", "forward", "is_seq", "newer", "next_seq",
           "seq_diff", "seq_gt"]

SEQ_BITS = 16
"""Width of a sequence number in bits."""
SEQ_MOD = 1 << SEQ_BITS
"""Number of distinct sequence numbers (65536); valid values are ``0 .. SEQ_MOD - 1``."""
SEQ_HALF = SEQ_MOD >> 1
"""Half the sequence space (32768): the largest distance at which order is still known."""
_MASK = SEQ_MOD - 1


def is_seq(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a valid sequence number: an ``int`` (not ``bool``) in range."""
    return type(value) is int and 0 <= value < SEQ_MOD


# The checked functions take ``object`` because they check the type themselves: compiled with
# mypyc, an ``int`` parameter would turn a str into a TypeError and True into 1 before the check.


def _invalid(*values: object) -> NoReturn:
    bad = next(value for value in values if not is_seq(value))
    raise ValueError(f"sequence number must be an int in 0..{_MASK}, got {bad!r}")


def next_seq(s: object) -> int:
    """The sequence number after ``s``, wrapping 65535 to 0."""
    if type(s) is not int or not 0 <= s < SEQ_MOD:
        _invalid(s)
    return (s + 1) & _MASK


def seq_diff(a: object, b: object) -> int:
    """Signed distance ``a - b`` on the wrapping circle, in ``(-32768, 32768]``.

    Positive when ``a`` is newer. ``seq_diff(0, 65535) == 1``. Exactly half the space apart is
    reported as ``+32768`` (order unknown; see :func:`seq_gt`).
    """
    if type(a) is not int or type(b) is not int or not (0 <= a < SEQ_MOD and 0 <= b < SEQ_MOD):
        _invalid(a, b)
    d = (a - b) & _MASK
    return d - SEQ_MOD if d > SEQ_HALF else d


def seq_gt(a: object, b: object) -> bool:
    """Whether ``a`` is newer than ``b``, wrap-safe (same answers as aiortc's ``uint16_gt``).

    Two numbers exactly half the space apart are neither newer nor older than each other.
    """
    if type(a) is not int or type(b) is not int or not (0 <= a < SEQ_MOD and 0 <= b < SEQ_MOD):
        _invalid(a, b)
    d = (a - b) & _MASK
    return 0 < d < SEQ_HALF


# Unchecked forms for hot paths whose numbers were validated on the way in (``is_seq``).


def forward(a: int, b: int) -> int:
    """How far ``a`` is from ``b`` going forward, ``(a - b) mod 65536``; no checks."""
    return (a - b) & _MASK


def ahead(a: int, b: int) -> int:
    """:func:`seq_diff` without the checks: signed ``a - b`` in ``(-32768, 32768]``."""
    d = (a - b) & _MASK
    return d - SEQ_MOD if d > SEQ_HALF else d


def newer(a: int, b: int) -> bool:
    """:func:`seq_gt` without the checks: ``a`` is newer than ``b``."""
    return 0 < (a - b) & _MASK < SEQ_HALF
