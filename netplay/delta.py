"""Delta compression of snapshots against an acknowledged baseline (Quake 3, Fiedler).

A game state is a tree of msgpack values: dicts (keys ``str`` or ``int``), lists, and scalars
(``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``). :func:`diff` describes how to turn
one state into another, leaving out unchanged subtrees; :func:`patch` applies it. Both are pure:
their inputs are never mutated. :func:`patch` shares unchanged subtrees with the old state.

Encoding of a delta (an "op"), chosen so that the common case, a few changed numbers deep in
nested dicts, costs only the changed keys and values:

============================  ==========================================================
op                            meaning
============================  ==========================================================
scalar (not dict/list)        replace the value with this scalar
``{key: op, ...}``            patch a dict: apply each op to that key; other keys unchanged
``[]`` (as a dict entry)      remove this key from the dict
``[0, value]``                replace the value with ``value`` (any type: dict, list, ...)
``[1, i, op, j, op, ...]``    patch a list or tuple of the same length at indices i, j, ...
============================  ==========================================================

Ops are plain msgpack values (no extension types), so a delta packs like any other body. Lists
and tuples are interchangeable in an op, so bodies unpacked with ``use_list=False`` work too.
Dicts with ``int`` keys need ``msgpack.unpackb(..., strict_map_key=False)``, as the states do.

:class:`DeltaEncoder` (one per receiver) encodes each snapshot against the newest snapshot that
receiver acknowledged, or sends it whole when nothing recent enough was acknowledged.
:class:`DeltaDecoder` (one per sender) keeps recent decoded states as baselines.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NoReturn

import msgpack

from netplay.errors import ProtocolError
from netplay.seq import SEQ_HALF, forward, is_seq, newer, seq_diff, seq_gt

__all__ = [
    "STALE",
    "DeltaDecoder",
    "DeltaEncoder",
    "copy_state",
    "delta_bytes_saved",
    "diff",
    "packed_size",
    "patch",
]

logger = logging.getLogger(__name__)

Delta = Any
"""A delta: a msgpack-serialisable op, as described in the module docstring."""

_REPLACE = 0
_LIST_PATCH = 1
_SAME = object()  # diff's internal "unchanged" marker; never leaves this module
_ATOMS = frozenset({bytes, str, int, float, bool, type(None)})  # copy_state shares these
_MAX_DEPTH = 1024
"""Deepest state the recursive walks here follow (msgpack's own limit: nothing deeper can be
sent or received). Python stops at its recursion limit before this; code compiled with mypyc
has no such check (mypyc/mypyc#582) and would overflow the C stack, for example on a state
that contains itself."""


def _too_deep() -> RecursionError:
    return RecursionError(f"state nested more than {_MAX_DEPTH} levels deep")


def _same_scalar(a: Any, b: Any) -> bool:
    # Strict: 1, 1.0 and True are == in Python but different msgpack values; -0.0 and 0.0
    # likewise. NaN equals NaN here, so an unchanged NaN field costs nothing.
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if a != a:
            return bool(b != b)
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    try:
        return bool(a == b)
    except Exception:  # exotic values with a failing __eq__: treat as changed
        return False


def _replace_op(new: Any) -> Any:
    if isinstance(new, dict | list | tuple):
        return [_REPLACE, new]
    return new


def _diff(old: Any, new: Any, depth: int) -> Any:
    """The op turning ``old`` into ``new``, or ``_SAME``."""
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return [_REPLACE, new]
        if depth > _MAX_DEPTH:
            raise _too_deep()
        depth += 1
        out: dict[Any, Any] = {}
        added = 0
        for key, value in new.items():
            if key in old:
                sub = _diff(old[key], value, depth)
                if sub is not _SAME:
                    out[key] = sub
            else:
                out[key] = _replace_op(value)
                added += 1
        if len(old) > len(new) - added:  # some keys of old are gone
            for key in old:
                if key not in new:
                    out[key] = []
        return out if out else _SAME
    if isinstance(new, list | tuple):
        if type(old) is not type(new) or len(old) != len(new):
            return [_REPLACE, new]
        if depth > _MAX_DEPTH:
            raise _too_deep()
        depth += 1
        ops: list[Any] = [_LIST_PATCH]
        scalars = 0
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            sub = _diff(a, b, depth)
            if sub is not _SAME:
                ops.append(i)
                ops.append(sub)
                if not isinstance(sub, dict | list):
                    scalars += 1
        changed = (len(ops) - 1) // 2
        if changed == 0:
            return _SAME
        # Index/value pairs cost more than the list itself once most elements are plain
        # scalar replacements.
        if scalars == changed and 2 * changed >= len(new):
            return [_REPLACE, new]
        return ops
    if isinstance(old, dict | list | tuple) or not _same_scalar(old, new):
        return new
    return _SAME


def diff(old: Any, new: Any) -> Delta:
    """A delta that :func:`patch` turns from ``old`` into ``new`` (neither is mutated).

    Changed keys and removed keys are listed, unchanged subtrees are omitted; lists of the same
    length are patched element by element, otherwise replaced. Type changes (``1`` to ``1.0``
    or ``True``) count as changes. For equal states the delta is an empty patch.
    """
    op = _diff(old, new, 0)
    if op is not _SAME:
        return op
    if isinstance(new, dict):
        return {}
    if isinstance(new, list | tuple):
        return [_LIST_PATCH]
    return new


def _bad(message: str) -> ProtocolError:
    return ProtocolError(f"malformed delta: {message}")


def _patch(old: Any, op: Any, depth: int) -> Any:
    if isinstance(op, dict):
        if not isinstance(old, dict):
            raise _bad(f"dict patch applied to {type(old).__name__}")
        if depth > _MAX_DEPTH:
            raise _too_deep()
        depth += 1
        out = dict(old)
        for key, sub in op.items():
            if isinstance(sub, list | tuple) and not sub:
                if key not in out:
                    raise _bad(f"removal of missing key {key!r}")
                del out[key]
            elif key in out:
                out[key] = _patch(out[key], sub, depth)
            elif isinstance(sub, dict) or (
                isinstance(sub, list | tuple) and sub[0] != _REPLACE
            ):
                raise _bad(f"patch of missing key {key!r}")
            else:
                out[key] = _patch(None, sub, depth)
        return out
    if isinstance(op, list | tuple):
        if not op:
            raise _bad("empty op outside a dict")
        tag = op[0]
        if tag == _REPLACE and type(tag) is int:
            if len(op) != 2:
                raise _bad(f"replace op has {len(op)} items, expected 2")
            return op[1]
        if tag == _LIST_PATCH and type(tag) is int:
            if not isinstance(old, list | tuple):
                raise _bad(f"list patch applied to {type(old).__name__}")
            if len(op) % 2 != 1:
                raise _bad("list patch needs index/op pairs")
            if depth > _MAX_DEPTH:
                raise _too_deep()
            depth += 1
            items = list(old)
            for j in range(1, len(op), 2):
                index = op[j]
                if type(index) is not int or not 0 <= index < len(items):
                    raise _bad(f"list index {index!r} out of range for length {len(items)}")
                items[index] = _patch(items[index], op[j + 1], depth)
            return tuple(items) if isinstance(old, tuple) else items
        raise _bad(f"unknown op tag {tag!r}")
    return op


def patch(old: Any, delta: Delta) -> Any:
    """Apply a :func:`diff` delta to ``old`` and return the new state (``old`` is not mutated).

    Unchanged subtrees of the result are shared with ``old``, replaced ones with the delta.
    Raises
    :class:`~netplay.errors.ProtocolError` when the delta is malformed or does not fit ``old``
    (for example it patches a key ``old`` lacks).
    """
    try:
        return _patch(old, delta, 0)
    except RecursionError:
        raise _bad("nested too deeply") from None
    except TypeError as exc:  # e.g. an unhashable key in a hand-made delta
        raise _bad(str(exc)) from None


def copy_state(value: Any) -> Any:
    """A deep copy of a state tree (dicts, lists, tuples); scalars are shared.

    Several times faster than :func:`copy.deepcopy` for msgpack-shaped data.
    """
    return _copy(value, 0)


def _copy(value: Any, depth: int) -> Any:
    if type(value) in _ATOMS:
        return value
    if depth > _MAX_DEPTH:
        raise _too_deep()
    depth += 1
    if isinstance(value, dict):
        return {k: _copy(v, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, depth) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v, depth) for v in value)
    return value


def packed_size(value: Any) -> int:
    """Size in bytes of ``value`` packed with msgpack (``use_bin_type=True``)."""
    return len(msgpack.packb(value, use_bin_type=True))


def delta_bytes_saved(state: Any, body: Any) -> int:
    """Bytes saved by sending ``body`` (a delta) instead of the full ``state``, packed.

    Negative when the delta came out larger. Costs two msgpack packs, so call it for
    statistics, not on a hot path you care about; :class:`DeltaEncoder` records sizes only when
    asked.
    """
    return packed_size(state) - packed_size(body)


def _bad_seq(seq: object, what: str) -> NoReturn:
    raise ProtocolError(f"{what} must be a sequence number (int 0..65535), got {seq!r}")


def _check_span(name: str, value: int) -> None:
    # A distance in sequence numbers is only meaningful below half the space.
    if not 1 <= value < SEQ_HALF:
        raise ValueError(f"{name} must be in 1..{SEQ_HALF - 1}, got {value}")


class DeltaEncoder:
    """Encodes one sender's snapshots for one receiver against that receiver's acks.

    Call :meth:`encode` for each snapshot sent to the receiver and :meth:`ack` for each
    sequence number the receiver reports decoded. A snapshot is encoded against the newest
    acknowledged one, as long as that is at most ``max_baseline_age`` sequence numbers older;
    otherwise it goes out whole. Only states this encoder sent are kept, at most
    ``max_baseline_age + 1`` of them.
    """

    def __init__(self, max_baseline_age: int = 32) -> None:
        _check_span("max_baseline_age", max_baseline_age)
        self.max_baseline_age = max_baseline_age
        """Oldest usable baseline, in sequence numbers behind the one being encoded."""
        self._sent: dict[int, Any] = {}
        self._acked: int | None = None
        self._last_seq: int | None = None
        self.full_count = 0
        """Snapshots sent whole."""
        self.delta_count = 0
        """Snapshots sent as a delta."""

    @property
    def acked(self) -> int | None:
        """The newest acknowledged sequence number still usable as a baseline, if any."""
        return self._acked

    def encode(self, seq: object, state: Any, *, copy: bool = True) -> tuple[int | None, Any]:
        """Encode snapshot ``seq``: returns ``(baseline_seq, delta)`` or ``(None, state)``.

        The state is remembered as a possible future baseline. With ``copy=True`` (the
        default) a deep copy is kept, so the game may mutate its state after the call; pass
        ``copy=False`` only for a state that will never be mutated (for example one copy shared
        by the encoders of all receivers).
        """
        if not is_seq(seq):
            raise ValueError(f"sequence number must be an int in 0..65535, got {seq!r}")
        last = self._last_seq
        if last is not None and not newer(seq, last):
            raise ValueError(f"sequence numbers must increase: {seq} after {last}")
        self._last_seq = seq
        sent = self._sent
        if sent and forward(seq, next(iter(sent))) > self.max_baseline_age:
            self._prune(seq)  # only when the oldest held state is too old
        sent[seq] = copy_state(state) if copy else state
        baseline = self._acked
        if baseline is None:
            self.full_count += 1
            return None, state
        self.delta_count += 1
        return baseline, diff(self._sent[baseline], state)

    def ack(self, seq: object) -> bool:
        """Record that the receiver decoded ``seq``; returns whether it became the baseline.

        Acks for sequence numbers this encoder never sent (or no longer holds), and acks older
        than the current baseline, are ignored.
        """
        if not is_seq(seq) or seq not in self._sent:
            logger.debug("%r: ignoring ack for unknown seq %r", self, seq)
            return False
        if self._acked is not None and not seq_gt(seq, self._acked):
            return False
        self._acked = seq
        # Only the newest ack is ever used: older states can go (oldest first, in order).
        sent = self._sent
        while (old := next(iter(sent))) != seq:
            del sent[old]
        return True

    def _prune(self, seq: int) -> None:
        # _sent is in sending order (oldest first), so pruning stops at the first keeper.
        sent = self._sent
        while sent:
            old = next(iter(sent))
            if seq_diff(seq, old) <= self.max_baseline_age:
                break
            del sent[old]
            if old == self._acked:
                self._acked = None

    def reset(self) -> None:
        """Forget all baselines (the next snapshot goes whole), e.g. after a reconnect."""
        self._sent.clear()
        self._acked = None
        self._last_seq = None

    def __repr__(self) -> str:
        return f"<DeltaEncoder acked={self._acked} held={len(self._sent)}>"


STALE: Any = object()
"""Returned by :meth:`DeltaDecoder.decode` for a late snapshot whose baseline was forgotten."""


class DeltaDecoder:
    """Decodes one sender's snapshots, keeping recent decoded states as baselines.

    ``history`` is how many sequence numbers behind the newest decoded one a baseline may be;
    it must cover the sender's ``max_baseline_age`` (32 by default) plus reordering.
    """

    def __init__(self, history: int = 64) -> None:
        _check_span("history", history)
        self.history = history
        """How far behind the newest decoded sequence number states are kept."""
        self._states: dict[int, Any] = {}
        self._newest: int | None = None
        self.stale = 0
        """Snapshots answered with :data:`STALE` (late, their baseline already forgotten)."""

    @property
    def last_decoded_seq(self) -> int | None:
        """The newest sequence number decoded so far: what the receiver should acknowledge."""
        return self._newest

    def decode(self, seq: object, baseline: object, body: Any, *, copy: bool = True) -> Any:
        """Decode snapshot ``seq`` from ``body``: a full state when ``baseline`` is ``None``,
        else a delta against the stored state ``baseline``.

        The decoded state is stored as a future baseline. With ``copy=True`` (the default) the
        caller gets a private deep copy it may mutate; with ``copy=False`` it gets the stored
        state itself, whose subtrees are shared with other baselines, so it must be treated as
        read-only (mutating it would corrupt later deltas). Raises
        :class:`~netplay.errors.ProtocolError` when a sequence number is malformed, the
        baseline is unknown (never decoded or too old) or not older than ``seq``, or the delta
        does not apply. A snapshot older than the newest decoded one whose baseline is too old
        to be kept is stale, not malformed: :data:`STALE` is returned (reordering beyond
        ``history``).
        """
        if not is_seq(seq):
            _bad_seq(seq, "snapshot seq")
        if baseline is None:
            state = body
        else:
            if not is_seq(baseline):
                _bad_seq(baseline, "delta baseline")
            if not seq_gt(seq, baseline):
                raise ProtocolError(f"delta baseline {baseline} is not older than seq {seq}")
            if baseline not in self._states:
                newest = self._newest
                if newest is not None and not seq_gt(seq, newest):
                    self.stale += 1
                    return STALE  # a late packet whose baseline we already forgot
                raise ProtocolError(f"unknown delta baseline {baseline} for seq {seq}")
            state = patch(self._states[baseline], body)
        limit = self.history
        states = self._states
        newest = self._newest
        if newest is None or newer(seq, newest):
            self._newest = seq
            states[seq] = state
            # ((seq - s) mod 2**16) <= limit  <=>  0 <= seq_diff(seq, s) <= limit. The dict
            # is kept oldest first, so the states to forget are at its front.
            while forward(seq, (old := next(iter(states)))) > limit:
                del states[old]
        elif 0 <= seq_diff(newest, seq) <= limit:
            # A late one: still a baseline the sender may use. Keep the dict oldest first.
            late = seq not in states
            states[seq] = state
            if late:
                self._states = dict(sorted(states.items(),
                                           key=lambda item: -forward(newest, item[0])))
        if not copy or type(state) in _ATOMS:
            return state
        return copy_state(state)

    def reset(self) -> None:
        """Forget all decoded states."""
        self._states.clear()
        self._newest = None

    def __repr__(self) -> str:
        return f"<DeltaDecoder newest={self._newest} held={len(self._states)}>"
