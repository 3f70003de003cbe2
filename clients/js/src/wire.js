// netplay wire format, version 2 (docs/wire.md): datagram layout, msgpack rules, numbers.
//
// Mirrors netplay/wire.py. Game values are encoded with @msgpack/msgpack (vendored) under the
// numeric rules of docs/wire.md section 3:
// - a JavaScript number that is a safe integer (|x| <= 2^53 - 1) goes as a msgpack integer,
//   any other number as float 64; wrap a value in `f64(x)` to send float 64 even when it is
//   integral (1.0), because Python tells 1 and 1.0 apart;
// - an integral number beyond 2^53 is refused (RangeError) instead of silently becoming a float;
// - integers that arrive beyond 2^53 decode as BigInt (exact), all others as numbers;
// - times on the wire (sent_at, echo) are seconds, always float 64.

import { Encoder, Decoder } from "../vendor/msgpack/msgpack.mjs";

export const WIRE_VERSION = 2;
export const MAX_DATAGRAM = 65536;
export const TARGET_DATAGRAM = 1100;
/** Seconds a receiver may hold an ack (docs/wire.md 8.1); this client acks within ACK_DELAY. */
export const MAX_ACK_DELAY = 0.04;
export const MAX_ACK_BYTES = 256;
export const WINDOW = MAX_ACK_BYTES * 8;
export const MAX_ID = 2 ** 53;
export const MAX_EPOCH = 2 ** 31;
export const MAX_FRAGMENTS = 1 << 20;
export const CONTROL_LANE = 0;
export const SEQ_MOD = 65536;
export const MAX_TIME = 1e12;

/** Thrown for a malformed datagram or message from a peer (mirrors netplay.errors.ProtocolError). */
export class ProtocolError extends Error {
  constructor(message) { super(message); this.name = "ProtocolError"; }
}

/** A number to be sent as msgpack float 64 even when integral (`f64(2)` arrives in Python as 2.0). */
export class Float64 {
  /** @param {number} value */
  constructor(value) {
    if (typeof value !== "number") throw new TypeError(`f64 needs a number, got ${typeof value}`);
    this.value = value;
  }
}

/** @param {number} value @returns {Float64} */
export function f64(value) { return new Float64(value); }

class GameEncoder extends Encoder {
  doEncode(object, depth) {
    if (object instanceof Float64) {
      this.ensureBufferSizeToWrite(9);
      this.writeU8(0xcb);
      this.writeF64(object.value);
      return;
    }
    if (typeof object === "number" && Number.isInteger(object) && !Number.isSafeInteger(object)) {
      throw new RangeError(
        `integer ${object} is beyond 2^53: JavaScript numbers lose precision there, so netplay ` +
        `refuses it (send a string, or f64(x) if a float is meant)`);
    }
    if (typeof object === "bigint") {
      if (object > 0xffffffffffffffffn || object < -0x8000000000000000n) {
        throw new RangeError(`BigInt ${object} does not fit msgpack's 64-bit integers`);
      }
      if (object >= 0n) { this.ensureBufferSizeToWrite(9); this.writeU8(0xcf); this.writeBigUint64(object); }
      else { this.ensureBufferSizeToWrite(9); this.writeU8(0xd3); this.writeBigInt64(object); }
      return;
    }
    if (typeof object === "function" || typeof object === "symbol") {
      throw new TypeError(`netplay sends msgpack values only, not ${typeof object}`);
    }
    super.doEncode(object, depth);
  }
}

const encoder = new GameEncoder();

/**
 * msgpack-encode one game value (a state, an event body).
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function packBody(value) {
  return encoder.encode(value);
}

function makeDecoder(limits) {
  const decoder = new Decoder({
    useBigInt64: true,
    maxStrLength: limits.maxSize, maxBinLength: limits.maxSize, maxExtLength: limits.maxSize,
    maxArrayLength: limits.maxArrayLength, maxMapLength: limits.maxMapLength,
  });
  // 64-bit integers: a number when exact, a BigInt only beyond 2^53 (never a rounded number).
  const u64 = decoder.readU64AsBigInt, i64 = decoder.readI64AsBigInt;
  const narrow = (v) => (v <= 9007199254740991n && v >= -9007199254740991n ? Number(v) : v);
  decoder.readU64AsBigInt = function () { return narrow(u64.call(this)); };
  decoder.readI64AsBigInt = function () { return narrow(i64.call(this)); };
  return decoder;
}

/** Receiver limits (Python: netplay._unpack.UnpackLimits). */
export const DEFAULT_LIMITS = Object.freeze({
  maxSize: 8 * 1024 * 1024, maxArrayLength: 1 << 20, maxMapLength: 1 << 18,
});
const datagramDecoder = makeDecoder({ maxSize: MAX_DATAGRAM, maxArrayLength: MAX_DATAGRAM,
  maxMapLength: MAX_DATAGRAM });
const bodyDecoders = new Map();

/**
 * Decode exactly one msgpack value (a reassembled message).
 * @param {Uint8Array} bytes
 * @param {{maxSize:number, maxArrayLength:number, maxMapLength:number}} [limits]
 */
export function unpackBody(bytes, limits = DEFAULT_LIMITS) {
  if (bytes.length > limits.maxSize) {
    throw new ProtocolError(`message of ${bytes.length} bytes is over the ${limits.maxSize}-byte limit`);
  }
  let decoder = bodyDecoders.get(limits);
  if (!decoder) { decoder = makeDecoder(limits); bodyDecoders.set(limits, decoder); }
  try {
    return decoder.decode(bytes);
  } catch (err) {
    throw new ProtocolError(`not a msgpack value: ${err.message}`);
  }
}

// -- header encoding (byte-exact with netplay/wire.py) -----------------------------------------

const NIL = 0xc0;
const intEncoder = new Encoder();

/** @param {number} n */
function packInt(n) { return intEncoder.encode(n); }

function packF64(x) {
  const out = new Uint8Array(9);
  out[0] = 0xcb;
  new DataView(out.buffer).setFloat64(1, x);
  return out;
}

function packBin(bytes) {
  const n = bytes.length;
  let head;
  if (n < 0x100) head = Uint8Array.of(0xc4, n);
  else if (n < 0x10000) head = Uint8Array.of(0xc5, n >> 8, n & 0xff);
  else head = Uint8Array.of(0xc6, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  return concat([head, bytes]);
}

function arrayHeader(n) {
  if (n < 16) return Uint8Array.of(0x90 | n);
  if (n < 0x10000) return Uint8Array.of(0xdc, n >> 8, n & 0xff);
  return Uint8Array.of(0xdd, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

/** @param {Uint8Array[]} parts */
export function concat(parts) {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Check a time for the wire: seconds, finite, |t| < 10^12. */
export function checkTime(t, what = "time") {
  if (typeof t !== "number" || !(Math.abs(t) < MAX_TIME)) {
    throw new RangeError(`${what} must be seconds as a finite number below 10^12, got ${t} ` +
      `(performance.now() / 1000, never Date.now())`);
  }
  return t;
}

function checkSeq(n, what) {
  if (!Number.isInteger(n) || n < 0 || n >= SEQ_MOD) throw new RangeError(`${what} must be 0..65535`);
  return n;
}

function checkId(n, what) {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be an integer in 0..2^53-1`);
  return n;
}

/**
 * The first part of a datagram: version, array header, seq, sent_at, echo, ack, snapshot.
 * @param {number} seq @param {number} sentAt seconds
 * @param {[number, number] | null} echo @param {number | null} ack
 * @param {[number, number, number | null] | null} [snapshot] (seq, tick, baseline)
 * @param {Uint8Array} [snapshotBody] packBody(state)
 */
export function packHead(seq, sentAt, echo, ack, snapshot = null, snapshotBody = undefined) {
  const parts = [Uint8Array.of(WIRE_VERSION, 0x98), packInt(checkSeq(seq, "seq")),
    packF64(checkTime(sentAt, "sent_at"))];
  if (echo == null) parts.push(Uint8Array.of(NIL));
  else parts.push(Uint8Array.of(0x92), packF64(checkTime(echo[0], "echo")), packF64(checkTime(echo[1], "echo")));
  parts.push(ack == null ? Uint8Array.of(NIL) : packInt(checkSeq(ack, "ack")));
  if (snapshot == null) parts.push(Uint8Array.of(NIL));
  else {
    const [snapSeq, tick, baseline] = snapshot;
    if (!Number.isSafeInteger(tick)) throw new RangeError("tick must be an integer within ±2^53");
    parts.push(Uint8Array.of(0x94), packInt(checkSeq(snapSeq, "snapshot seq")), packInt(tick),
      baseline == null ? Uint8Array.of(NIL) : packInt(checkSeq(baseline, "baseline")), snapshotBody);
  }
  return concat(parts);
}

/**
 * The last three fields: epoch, acks ([epoch, cum, bits] or null) and the packed records.
 * @param {number} epoch @param {{epoch:number, cum:number, bits:Uint8Array} | null} acks
 * @param {Uint8Array[]} records
 */
export function packTail(epoch, acks, records) {
  const parts = [packInt(epoch)];
  if (acks == null) parts.push(Uint8Array.of(NIL));
  else parts.push(Uint8Array.of(0x93), packInt(acks.epoch), packInt(checkId(acks.cum, "cum")), packBin(acks.bits));
  parts.push(arrayHeader(records.length), ...records);
  return concat(parts);
}

/** A whole reliable record. @param {Uint8Array} packedBody */
export function packRecord(rid, lane, lseq, packedBody) {
  return concat([Uint8Array.of(0x94), packInt(checkId(rid, "rid")), packInt(lane),
    packInt(checkId(lseq, "lseq")), packedBody]);
}

/** Piece `index` of `count` of a reliable message. @param {Uint8Array} piece */
export function packFragmentRecord(rid, lane, lseq, piece, index, count) {
  return concat([Uint8Array.of(0x96), packInt(checkId(rid, "rid")), packInt(lane),
    packInt(checkId(lseq, "lseq")), packBin(piece), packInt(index), packInt(count)]);
}

/** An unreliable record. @param {Uint8Array} packedBody */
export function packUnreliableRecord(lane, packedBody) {
  return concat([Uint8Array.of(0x94, NIL), packInt(lane), Uint8Array.of(NIL), packedBody]);
}

// -- decoding ----------------------------------------------------------------------------------

const isInt = (v) => typeof v === "number" && Number.isInteger(v);
const isSeq = (v) => isInt(v) && v >= 0 && v < SEQ_MOD;
const isId = (v) => isInt(v) && v >= 0 && v < MAX_ID;
const isTime = (v) => typeof v === "number" && Math.abs(v) < MAX_TIME;

/**
 * @typedef {{rid: number|null, lane: number, lseq: number|null, body: any, index: number, count: number}} Record
 * @typedef {{seq: number, sentAt: number, echo: [number, number] | null, ack: number | null,
 *   snapshot: {seq: number, tick: number, baseline: number | null, body: any} | null,
 *   epoch: number, acks: {epoch: number, cum: number, bits: Uint8Array} | null,
 *   records: Record[]}} Datagram
 */

function record(fields, lanes) {
  if (!Array.isArray(fields) || (fields.length !== 4 && fields.length !== 6)) {
    throw new ProtocolError("record is not a 4- or 6-element array");
  }
  const [rid, lane, lseq] = fields;
  if (!(isInt(lane) && lane >= 0 && lane < lanes)) throw new ProtocolError(`record on unknown lane ${lane}`);
  if (rid === null) {
    if (lseq !== null || fields.length !== 4) throw new ProtocolError("unreliable record with a lane sequence number or pieces");
    return { rid: null, lane, lseq: null, body: fields[3], index: 0, count: 0 };
  }
  if (!(isId(rid) && isId(lseq))) throw new ProtocolError("record: bad id or lane sequence number");
  if (fields.length === 4) return { rid, lane, lseq, body: fields[3], index: 0, count: 0 };
  const [, , , piece, index, count] = fields;
  if (!(piece instanceof Uint8Array && isInt(index) && isInt(count) && index >= 0 && index < count
        && count <= MAX_FRAGMENTS && count > 1)) throw new ProtocolError("record: bad piece");
  return { rid, lane, lseq, body: piece, index, count };
}

/**
 * Decode and check one datagram; ProtocolError when it is not a well-formed version-2 datagram.
 * @param {Uint8Array} frame @param {number} [lanes] @returns {Datagram}
 */
export function unpackDatagram(frame, lanes = 256) {
  if (frame.length > MAX_DATAGRAM) throw new ProtocolError(`datagram of ${frame.length} bytes is over the limit`);
  if (frame.length === 0) throw new ProtocolError("empty datagram");
  if (frame[0] !== WIRE_VERSION) throw new ProtocolError(`wire version ${frame[0]} (this peer speaks ${WIRE_VERSION})`);
  let fields;
  try {
    fields = datagramDecoder.decode(frame.subarray(1));
  } catch (err) {
    throw new ProtocolError(`not a msgpack value: ${err.message}`);
  }
  if (!Array.isArray(fields) || fields.length !== 8) throw new ProtocolError("datagram is not an 8-element array");
  const [seq, sentAt, echo, ack, snap, epoch, acks, records] = fields;
  if (!(isSeq(seq) && isTime(sentAt))) throw new ProtocolError("datagram: bad seq or sent_at");
  if (echo !== null && !(Array.isArray(echo) && echo.length === 2 && isTime(echo[0]) && isTime(echo[1]))) {
    throw new ProtocolError("datagram: bad echo");
  }
  if (ack !== null && !isSeq(ack)) throw new ProtocolError("datagram: bad ack");
  let snapshot = null;
  if (snap !== null) {
    if (!(Array.isArray(snap) && snap.length === 4 && isSeq(snap[0]) && Number.isSafeInteger(snap[1])
          && (snap[2] === null || isSeq(snap[2])))) throw new ProtocolError("datagram: bad snapshot");
    snapshot = { seq: snap[0], tick: snap[1], baseline: snap[2], body: snap[3] };
  }
  if (!(isInt(epoch) && epoch > 0 && epoch < MAX_EPOCH)) throw new ProtocolError("datagram: bad epoch");
  let acksValue = null;
  if (acks !== null) {
    if (!(Array.isArray(acks) && acks.length === 3 && isInt(acks[0]) && acks[0] > 0 && acks[0] < MAX_EPOCH
          && isId(acks[1]) && acks[2] instanceof Uint8Array && acks[2].length <= MAX_ACK_BYTES)) {
      throw new ProtocolError("datagram: bad acks");
    }
    acksValue = { epoch: acks[0], cum: acks[1], bits: acks[2] };
  }
  if (!Array.isArray(records)) throw new ProtocolError("datagram: records is not an array");
  return { seq, sentAt, echo, ack, snapshot, epoch, acks: acksValue,
    records: records.map((r) => record(r, lanes)) };
}

/** Record ids above `cum` that an ack bitfield reports received. */
export function ackedIds(acks) {
  const out = [];
  const bits = acks.bits;
  for (let i = 0; i < bits.length; i++) {
    let byte = bits[i];
    for (let b = 0; byte; b++, byte >>= 1) if (byte & 1) out.push(acks.cum + 1 + i * 8 + b);
  }
  return out;
}

/** a is newer than b by the 16-bit wrap rule (RFC 1982). */
export function seqGt(a, b) {
  const d = (a - b) & 0xffff;
  return d > 0 && d < 0x8000;
}
