"""Data-channel packet format (msgpack), shared by every peer link. No I/O.

Each data-channel message is ``bytes``; its first byte says what follows:

``0x00`` STATE: one datagram per tick on the "state" channel, a msgpack array
    ``[seq, sent_at, echo, ack, snapshot]``:

    - ``seq``: 16-bit wrapping datagram sequence number (:mod:`netplay.seq`); gaps give loss;
    - ``sent_at``: sender's clock (seconds) when sent;
    - ``echo``: ``None`` or ``[t0, t1]``: ``sent_at`` of the newest datagram received from the
      addressee and the sender's clock when it arrived (NTP-style RTT and clock offset);
    - ``ack``: ``None`` or the newest snapshot seq received from the addressee (delta baseline);
    - ``snapshot``: ``None`` (a heartbeat) or ``[snap_seq, tick, baseline, body]``, where
      ``baseline`` is ``None`` for a full snapshot or the seq the ``body`` delta is against.

    So acks, heartbeats, clock samples and delta baselines ride inside the one datagram per
    tick. Keep a datagram under about 1,100 bytes: aiortc cuts user data into 1,200-byte SCTP
    chunks, and an unreliable message is lost whole when one chunk is lost.
``0x01`` MESSAGE: the msgpack encoding of one message body (any channel but "state").
``0x03`` BYE: sent on "events" before a peer closes on purpose; msgpack of the reason
    (``"left"`` or ``"kicked"``), so the others report it at once and with the right reason.
``0x04`` ALIAS: sent on "events" when the lobby gave us a new peer id (it restarted and forgot
    us); msgpack of the new id, so peers map the lobby's new id onto the link they have.
``0x02`` FRAGMENT: a piece of a reliable message too big to hand to aiortc at once: a 12-byte
    header ``!III`` (message id, total length, offset of this piece) and raw bytes; the pieces
    (in order, any sizes) concatenated are the msgpack encoding of the body.

Unpacking checks sizes before decoding, decodes with explicit msgpack limits
(:mod:`netplay._unpack`: lengths, and a cap on arrays and maps built from a big message, so a
hostile packet cannot make us allocate without bound) and raises
:class:`~netplay.errors.ProtocolError` for anything malformed or over a limit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from ._unpack import DEFAULT_LIMITS, UnpackLimits, unpack
from .errors import ProtocolError
from .seq import SEQ_MOD, is_seq

__all__ = [
    "ALIAS",
    "FRAGMENT",
    "MESSAGE",
    "BYE",
    "STATE",
    "Reassembler",
    "Snapshot",
    "StateDatagram",
    "fragment",
    "pack_alias",
    "pack_body",
    "pack_bye",
    "pack_message",
    "pack_state",
    "pack_state_frame",
    "split_message",
    "unpack_body",
    "unpack_state",
    "unpack_state_fields",
]

STATE = 0x00
MESSAGE = 0x01
FRAGMENT = 0x02
BYE = 0x03
ALIAS = 0x04

MAX_SEQ = 2**32
MAX_STATE_DATAGRAM = 65_536
"""A state datagram can't be bigger than one SCTP message."""
_HEADER = struct.Struct("!III")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A game snapshot inside a state datagram."""

    seq: int
    tick: int
    baseline: int | None
    body: Any


@dataclass(frozen=True, slots=True)
class StateDatagram:
    """The one datagram per tick on the state channel (see the module docstring)."""

    seq: int
    sent_at: float
    echo: tuple[float, float] | None = None
    ack: int | None = None
    snapshot: Snapshot | None = None


def pack_body(body: Any) -> bytes:
    """msgpack-encode one message body; ``TypeError`` names what can't be sent."""
    try:
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"netplay sends msgpack values only (None, bool, int, float, str, bytes, lists "
            f"and dicts of them): {exc}"
        ) from exc


def unpack_body(payload: bytes | memoryview, limits: UnpackLimits = DEFAULT_LIMITS) -> Any:
    """Decode one message body; ``ProtocolError`` when it isn't exactly one msgpack value
    or is over ``limits``."""
    try:
        return unpack(payload, limits)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"not a msgpack value: {type(exc).__name__}: {exc}") from exc


def pack_message(body: Any) -> bytes:
    """A whole MESSAGE frame for ``body``."""
    return bytes((MESSAGE,)) + pack_body(body)


def fragment(payload: bytes | memoryview, message_id: int, offset: int, size: int) -> bytes:
    """The FRAGMENT frame carrying ``payload[offset:offset + size]`` of one message."""
    return (bytes((FRAGMENT,)) + _HEADER.pack(message_id % MAX_SEQ, len(payload), offset)
            + payload[offset:offset + size])


def split_message(payload: bytes, fragment_size: int, message_id: int) -> list[bytes]:
    """Frames for an encoded body (:func:`pack_body`) on a reliable channel: one MESSAGE frame,
    or FRAGMENT frames of ``fragment_size`` payload bytes each. (Senders may also cut pieces
    of varying size with :func:`fragment`, as the paced sender does.)"""
    if len(payload) <= fragment_size:
        return [bytes((MESSAGE,)) + payload]
    view = memoryview(payload)
    return [fragment(view, message_id, offset, fragment_size)
            for offset in range(0, len(payload), fragment_size)]


class Reassembler:
    """Rebuilds fragmented messages arriving on one ordered, reliable channel."""

    def __init__(self, max_size: int, limits: UnpackLimits | None = None) -> None:
        self.max_size = max_size
        self.limits = UnpackLimits(max_size) if limits is None else limits
        self._id: int | None = None
        self._total = 0
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, frame: bytes) -> tuple[bool, Any]:
        """Take one frame; ``(True, body)`` when a message is complete, else ``(False, None)``.

        Raises ``ProtocolError`` on a malformed frame (and forgets any partial message).
        """
        if not frame:
            raise ProtocolError("empty frame")
        kind = frame[0]
        if kind == MESSAGE:
            if self._id is not None:
                self._reset()
                raise ProtocolError("whole message inside a fragmented one")
            if len(frame) - 1 > self.max_size:
                raise ProtocolError(f"message of {len(frame) - 1} bytes is over the limit")
            return True, unpack_body(memoryview(frame)[1:], self.limits)
        if kind != FRAGMENT:
            raise ProtocolError(f"unknown frame kind {kind}")
        if len(frame) <= 1 + _HEADER.size:
            self._reset()
            raise ProtocolError("truncated fragment")
        message_id, total, offset = _HEADER.unpack_from(frame, 1)
        if total > self.max_size:
            self._reset()
            raise ProtocolError(f"fragmented message of {total} bytes is over the "
                                f"{self.max_size}-byte limit")
        piece = frame[1 + _HEADER.size:]
        expected = (message_id, total, 0) if self._id is None else (self._id, self._total,
                                                                      self._size)
        if (message_id, total, offset) != expected or offset + len(piece) > total:
            self._reset()
            raise ProtocolError(f"fragment at {offset} of message {message_id} out of place")
        self._id, self._total = message_id, total
        self._parts.append(piece)
        self._size += len(piece)
        if self._size < total:
            return False, None
        payload = b"".join(self._parts)
        self._reset()
        return True, unpack_body(payload, self.limits)

    def _reset(self) -> None:
        self._id = None
        self._total = 0
        self._parts = []
        self._size = 0


def pack_alias(lobby_id: str) -> bytes:
    """An ALIAS frame."""
    return bytes((ALIAS,)) + pack_body(lobby_id)


def pack_bye(reason: str) -> bytes:
    """A BYE frame."""
    return bytes((BYE,)) + pack_body(reason)


def pack_state(datagram: StateDatagram) -> bytes:
    """Encode a state datagram (``TypeError`` if the snapshot body isn't msgpack)."""
    snap = datagram.snapshot
    snap_part = None if snap is None else [snap.seq, snap.tick, snap.baseline, snap.body]
    echo = None if datagram.echo is None else list(datagram.echo)
    return bytes((STATE,)) + pack_body(
        [datagram.seq, datagram.sent_at, echo, datagram.ack, snap_part]
    )


_STATE_PREFIX = bytes((STATE,))
_pack_header = msgpack.Packer(use_bin_type=True).pack
"""Packs the ints, floats and Nones of a datagram's header. One shared Packer is safe across
threads here: packing those types runs no Python code, so no other thread can run
in between (:func:`pack_body` packs game values, which may, with a fresh Packer)."""


def pack_state_frame(seq: int, sent_at: float, echo: tuple[float, float] | None,
                     ack: int | None, snapshot: tuple[int, int, int | None] | None = None,
                     body: bytes = b"") -> bytes:
    """:func:`pack_state` with the snapshot body already encoded (:func:`pack_body`).

    ``snapshot`` is ``(seq, tick, baseline)`` or ``None`` for a heartbeat. The bytes are the
    same as :func:`pack_state`'s: msgpack values are concatenated, so the body's encoding is
    appended where the header's last element (a nil placeholder) was.
    """
    head: bytes
    if snapshot is None:
        head = _pack_header((seq, sent_at, echo, ack, None))
        return _STATE_PREFIX + head
    snap_seq, tick, baseline = snapshot
    head = _pack_header((seq, sent_at, echo, ack, (snap_seq, tick, baseline, None)))
    return _STATE_PREFIX + head[:-1] + body


_TIME_TYPES = (float, int)


def _is_time(value: Any) -> bool:
    return type(value) in _TIME_TYPES and value == value and abs(value) < 1e12


def unpack_state(frame: bytes) -> StateDatagram:
    """Decode and check a state datagram; ``ProtocolError`` when it isn't one."""
    seq, sent_at, echo, ack, snap = unpack_state_fields(frame)
    return StateDatagram(seq, sent_at, echo, ack, None if snap is None else Snapshot(*snap))


StateFields = tuple[int, float, tuple[float, float] | None, int | None,
                    tuple[int, int, int | None, Any] | None]
"""A checked state datagram as plain values: ``(seq, sent_at, echo, ack, snapshot)``, the
snapshot as ``(seq, tick, baseline, body)`` or ``None``."""


def unpack_state_fields(frame: bytes) -> StateFields:
    """:func:`unpack_state` without the dataclasses (the receive path's version)."""
    if len(frame) > MAX_STATE_DATAGRAM:
        raise ProtocolError(f"state datagram of {len(frame)} bytes is over the limit")
    if not frame or frame[0] != STATE:
        raise ProtocolError("not a state datagram")
    fields = unpack_body(memoryview(frame)[1:])
    if not isinstance(fields, list) or len(fields) != 5:
        raise ProtocolError("state datagram is not a 5-element array")
    seq, sent_at, echo, ack, snap = fields
    # is_seq() and _is_time() written out: this runs for every datagram
    if not (type(seq) is int and 0 <= seq < SEQ_MOD and type(sent_at) in _TIME_TYPES
            and sent_at == sent_at and -1e12 < sent_at < 1e12):
        raise ProtocolError("state datagram: bad seq or sent_at")
    if echo is not None:
        if not (isinstance(echo, list) and len(echo) == 2 and _is_time(echo[0])
                and _is_time(echo[1])):
            raise ProtocolError("state datagram: bad echo")
        echo = (float(echo[0]), float(echo[1]))
    if ack is not None and not (type(ack) is int and 0 <= ack < SEQ_MOD):
        raise ProtocolError("state datagram: bad ack")
    if snap is not None:
        if not (isinstance(snap, list) and len(snap) == 4 and is_seq(snap[0])
                and type(snap[1]) is int and (snap[2] is None or is_seq(snap[2]))):
            raise ProtocolError("state datagram: bad snapshot")
        snap = (snap[0], snap[1], snap[2], snap[3])
    return seq, float(sent_at), echo, ack, snap
