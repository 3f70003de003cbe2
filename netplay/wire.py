"""Peer-to-peer datagram format (msgpack), wire version 2. No I/O.

Every peer pair shares one SCTP data channel (negotiated, id 0, unordered, no retransmits), and
every message on it is one netplay *datagram*: a version byte, then one msgpack array::

    0x02 [seq, sent_at, echo, ack, snapshot, epoch, acks, records]

- ``seq``: 16-bit wrapping datagram sequence number (:mod:`netplay.seq`); gaps give loss;
- ``sent_at``: sender's clock (seconds, float) when sent;
- ``echo``: ``nil`` or ``[t0, t1]``: ``sent_at`` of the newest datagram received from the
  addressee and the sender's clock when it arrived (NTP-style RTT and clock offset);
- ``ack``: ``nil`` or the newest snapshot seq received from the addressee (delta baseline);
- ``snapshot``: ``nil`` or ``[snap_seq, tick, baseline, body]``; ``baseline`` is ``nil`` for a
  full snapshot or the snapshot seq the ``body`` delta is against; ``tick`` is an int strictly
  within ``±2**53`` (exact in JavaScript), refused beyond on both sides;
- ``epoch``: the sender's reliable-stream epoch, an int in ``1 .. 2**31 - 1`` chosen at random
  for each remote peer the sender tracks; when it changes, the receiver starts a new stream;
- ``acks``: ``nil`` or ``[epoch, cum, bits]``: for the addressee's stream ``epoch``, every
  record id below ``cum`` arrived; ``bits`` (bin, at most :data:`MAX_ACK_BYTES`) has bit ``i``
  (byte ``i // 8``, least significant bit first) set when id ``cum + 1 + i`` arrived;
- ``records``: an array of messages, each one of
  - ``[rid, lane, lseq, body]``: a whole reliable message;
  - ``[rid, lane, lseq, piece, index, count]``: piece ``index`` of ``count`` (bin) of a
    reliable message; the pieces concatenated are the msgpack encoding of its body;
  - ``[nil, lane, nil, body]``: an unreliable message (sent once).

  ``rid`` numbers every reliable record the sender ever sent to this peer in this epoch
  (0, 1, 2, ... below ``2**53``); it is what acks acknowledge and what duplicates are dropped
  by. ``lane`` is the index of the channel in :attr:`MeshConfig.channels`, and lane 0 (the
  state channel has no records) is netplay's control lane, with bodies ``["bye", reason]`` and
  ``["alias", lobby_peer_id]``. ``lseq`` numbers the messages of one lane (0, 1, 2, ...);
  an ordered lane delivers them in that order.

So acks, heartbeats, clock samples, delta baselines and the due reliable messages ride in one
datagram. A datagram is at most :data:`MAX_DATAGRAM` bytes; netplay fills reliable records up
to :data:`TARGET_DATAGRAM` (aiortc cuts user data into 1,200-byte SCTP chunks, and an
unreliable message is lost whole when one chunk is lost). ``docs/wire.md`` is the full
specification for other implementations.

Unpacking checks sizes before decoding, decodes with explicit msgpack limits
(:mod:`netplay._unpack`) and raises :class:`~netplay.errors.ProtocolError` for anything
malformed or over a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ._unpack import DEFAULT_LIMITS, UnpackLimits, unpack
from .errors import ProtocolError
from .seq import is_seq

__all__ = [
    "CONTROL_LANE",
    "MAX_ACK_BYTES",
    "MAX_DATAGRAM",
    "MAX_ID",
    "TARGET_DATAGRAM",
    "WIRE_VERSION",
    "Acks",
    "Datagram",
    "Record",
    "Snapshot",
    "check_tick",
    "pack_body",
    "pack_datagram",
    "pack_acks",
    "pack_fragment_record",
    "pack_head",
    "pack_record",
    "pack_tail",
    "pack_unreliable_record",
    "unpack_body",
    "unpack_datagram",
]

WIRE_VERSION = 2
"""First byte of every datagram. A peer speaking another version is reported as bad input."""
CONTROL_LANE = 0
"""Lane of netplay's own control messages (``bye``, ``alias``)."""
MAX_DATAGRAM = 65_536
"""No datagram may be bigger (one SCTP message)."""
TARGET_DATAGRAM = 1_100
"""Reliable records are packed into datagrams up to this many bytes."""
MAX_ACK_DELAY = 0.04
"""Seconds: a receiver acknowledges a record at most this long after it arrived (it may wait
for its next snapshot datagram to carry the ack); senders count on it before calling a
record lost (docs/wire.md section 9)."""
MAX_ACK_BYTES = 256
"""Longest ``bits`` field of an ack (2,048 record ids past ``cum``)."""
MAX_ID = 2**53
"""Record ids and lane sequence numbers stay below this (exact in JavaScript numbers)."""
MAX_FRAGMENTS = 1 << 20
"""Most pieces one message may be cut into."""
MAX_EPOCH = 2**31
MAX_LANES = 256
"""Lane ids are below this."""

_VERSION_PREFIX = bytes((WIRE_VERSION,))
_packer = msgpack.Packer(use_bin_type=True)


def _packb(value: Any) -> bytes:
    return _packer.pack(value)  # type: ignore[no-any-return]


"""Packs the ints, floats, bytes and Nones of headers. One shared Packer is safe across
threads here: packing those types runs no Python code (game values go through
:func:`pack_body`, with a fresh Packer)."""
_NIL = b"\xc0"


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A game snapshot inside a datagram."""

    seq: int
    tick: int
    baseline: int | None
    body: Any


@dataclass(frozen=True, slots=True)
class Acks:
    """What arrived of the addressee's reliable stream ``epoch`` (see the module docstring)."""

    epoch: int
    cum: int
    bits: bytes = b""

    def received(self) -> list[int]:
        """Record ids above ``cum`` that ``bits`` reports as received."""
        out = []
        for i, byte in enumerate(self.bits):
            while byte:
                low = byte & -byte
                out.append(self.cum + 1 + i * 8 + low.bit_length() - 1)
                byte ^= low
        return out


@dataclass(frozen=True, slots=True)
class Record:
    """One message (or piece of one) inside a datagram.

    ``rid`` is ``None`` for an unreliable message; ``count`` is 0 for a whole message, else
    the number of pieces, and ``body`` is then the raw bytes of piece ``index``.
    """

    rid: int | None
    lane: int
    lseq: int | None
    body: Any
    index: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class Datagram:
    """A decoded datagram (see the module docstring)."""

    seq: int
    sent_at: float
    echo: tuple[float, float] | None = None
    ack: int | None = None
    snapshot: Snapshot | None = None
    epoch: int = 1
    acks: Acks | None = None
    records: tuple[Record, ...] = ()


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


def pack_record(rid: int, lane: int, lseq: int, packed_body: bytes) -> bytes:
    """A whole reliable record; ``packed_body`` is :func:`pack_body` of the message."""
    return b"\x94" + _packb(rid) + _packb(lane) + _packb(lseq) + packed_body


def pack_fragment_record(rid: int, lane: int, lseq: int, piece: bytes | memoryview,
                         index: int, count: int) -> bytes:
    """Piece ``index`` of ``count`` of a reliable message's encoding."""
    return (b"\x96" + _packb(rid) + _packb(lane) + _packb(lseq) + _packb(bytes(piece))
            + _packb(index) + _packb(count))


def pack_unreliable_record(lane: int, packed_body: bytes) -> bytes:
    """An unreliable record (sent once, never acknowledged)."""
    return b"\x94" + _NIL + _packb(lane) + _NIL + packed_body


def pack_acks(acks: Acks | None) -> bytes:
    """The ``acks`` field."""
    if acks is None:
        return _NIL
    return b"\x93" + _packb(acks.epoch) + _packb(acks.cum) + _packb(acks.bits)


def pack_head(seq: int, sent_at: float, echo: tuple[float, float] | None, ack: int | None,
              snapshot: tuple[int, int, int | None] | None = None,
              snapshot_body: bytes = b"") -> bytes:
    """The first part of a datagram: version byte, array header and the first five fields.

    ``snapshot`` is ``(seq, tick, baseline)`` with its body already encoded
    (``snapshot_body``, :func:`pack_body`), or ``None``. msgpack values are concatenated, so
    a datagram is ``pack_head(...) + pack_tail(...)``, each part packed once.
    """
    if snapshot is None:
        snap = _NIL
    else:
        snap_seq, tick, baseline = snapshot
        check_tick(tick)
        snap = b"\x94" + _packb(snap_seq) + _packb(tick) + _packb(baseline) + snapshot_body
    return b"".join((_VERSION_PREFIX, b"\x98", _packb(seq), _packb(sent_at),
                     _NIL if echo is None else _packb(echo), _packb(ack), snap))


def check_tick(tick: int) -> None:
    """``ValueError`` unless ``tick`` is strictly within ``±2**53`` (docs/wire.md section 3:
    a JavaScript peer could not hold it exactly)."""
    if not -MAX_ID < tick < MAX_ID:
        raise ValueError(f"tick {tick} is beyond 2**53: JavaScript peers cannot hold it "
                         "exactly (docs/wire.md, numeric rules)")


def pack_tail(epoch: int, acks: Acks | None, records: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The last three fields of a datagram: ``epoch``, ``acks`` and the encoded ``records``
    (:func:`pack_record` and friends)."""
    return b"".join((_packb(epoch), pack_acks(acks), _array_header(len(records)), *records))


def pack_datagram(datagram: Datagram) -> bytes:
    """Encode a :class:`Datagram` value (tests and tools; the send path packs parts)."""
    snap = datagram.snapshot
    records = []
    for r in datagram.records:
        if r.rid is None:
            records.append(pack_unreliable_record(r.lane, pack_body(r.body)))
        elif r.count:
            assert r.lseq is not None
            records.append(pack_fragment_record(r.rid, r.lane, r.lseq, r.body, r.index, r.count))
        else:
            assert r.lseq is not None
            records.append(pack_record(r.rid, r.lane, r.lseq, pack_body(r.body)))
    return pack_head(datagram.seq, datagram.sent_at, datagram.echo, datagram.ack,
                     None if snap is None else (snap.seq, snap.tick, snap.baseline),
                     b"" if snap is None else pack_body(snap.body)) \
        + pack_tail(datagram.epoch, datagram.acks, records)


_TIME_TYPES = (float, int)


def _is_time(value: Any) -> bool:
    return type(value) in _TIME_TYPES and value == value and abs(value) < 1e12


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 <= value < MAX_ID


def _record(fields: Any, lanes: int) -> Record:
    if not isinstance(fields, list) or len(fields) not in (4, 6):
        raise ProtocolError("record is not a 4- or 6-element array")
    rid, lane, lseq = fields[0], fields[1], fields[2]
    if not (type(lane) is int and 0 <= lane < lanes):
        raise ProtocolError(f"record on unknown lane {lane!r}")
    if rid is None:
        if lseq is not None or len(fields) != 4:
            raise ProtocolError("unreliable record with a lane sequence number or pieces")
        return Record(None, lane, None, fields[3])
    if not (_is_id(rid) and _is_id(lseq)):
        raise ProtocolError("record: bad id or lane sequence number")
    if len(fields) == 4:
        return Record(rid, lane, lseq, fields[3])
    piece, index, count = fields[3], fields[4], fields[5]
    if not (isinstance(piece, bytes) and type(index) is int and type(count) is int
            and 0 <= index < count <= MAX_FRAGMENTS and count > 1):
        raise ProtocolError("record: bad piece")
    return Record(rid, lane, lseq, piece, index, count)


def unpack_datagram(frame: bytes, lanes: int = MAX_LANES) -> Datagram:
    """Decode and check one datagram. Records on lanes at or above ``lanes`` are rejected
    (receivers pass :data:`MAX_LANES` and judge unknown lanes per record).

    Raises ``ProtocolError`` when it isn't a well-formed version-2 datagram.
    """
    if len(frame) > MAX_DATAGRAM:
        raise ProtocolError(f"datagram of {len(frame)} bytes is over the limit")
    if not frame:
        raise ProtocolError("empty datagram")
    if frame[0] != WIRE_VERSION:
        raise ProtocolError(f"wire version {frame[0]} (this peer speaks {WIRE_VERSION}); "
                            f"are both players running compatible netplay versions?")
    fields = unpack_body(memoryview(frame)[1:])
    if not isinstance(fields, list) or len(fields) != 8:
        raise ProtocolError("datagram is not an 8-element array")
    seq, sent_at, echo, ack, snap, epoch, acks, records = fields
    if not (is_seq(seq) and type(sent_at) in _TIME_TYPES
            and sent_at == sent_at and -1e12 < sent_at < 1e12):
        raise ProtocolError("datagram: bad seq or sent_at")
    if echo is not None:
        if not (isinstance(echo, list) and len(echo) == 2 and _is_time(echo[0])
                and _is_time(echo[1])):
            raise ProtocolError("datagram: bad echo")
        echo = (float(echo[0]), float(echo[1]))
    if ack is not None and not is_seq(ack):
        raise ProtocolError("datagram: bad ack")
    snapshot = None
    if snap is not None:
        if not (isinstance(snap, list) and len(snap) == 4 and is_seq(snap[0])
                and type(snap[1]) is int and -MAX_ID < snap[1] < MAX_ID
                and (snap[2] is None or is_seq(snap[2]))):
            raise ProtocolError("datagram: bad snapshot")
        snapshot = Snapshot(snap[0], snap[1], snap[2], snap[3])
    if not (type(epoch) is int and 0 < epoch < MAX_EPOCH):
        raise ProtocolError("datagram: bad epoch")
    acks_value = None
    if acks is not None:
        if not (isinstance(acks, list) and len(acks) == 3 and type(acks[0]) is int
                and 0 < acks[0] < MAX_EPOCH and _is_id(acks[1]) and isinstance(acks[2], bytes)
                and len(acks[2]) <= MAX_ACK_BYTES):
            raise ProtocolError("datagram: bad acks")
        acks_value = Acks(acks[0], acks[1], acks[2])
    if not isinstance(records, list):
        raise ProtocolError("datagram: records is not an array")
    return Datagram(seq, float(sent_at), echo, ack, snapshot, epoch, acks_value,
                    tuple(_record(r, lanes) for r in records))
