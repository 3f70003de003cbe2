// Snapshots (docs/wire.md sections 10-12): delta decoding, the snapshot judge, clock sync and
// interpolation. Ports of netplay/delta.py (decoding), netplay/snapshots.py, netplay/clock.py
// and netplay/interpolation.py.

import { Float64, ProtocolError, seqGt } from "./wire.js";

const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);

/**
 * Apply a delta op to `old` (never mutated); docs/wire.md section 11.
 * @param {any} old @param {any} op @returns {any}
 */
export function patch(old, op, depth = 0) {
  if (depth > 256) throw new ProtocolError("malformed delta: nested too deeply");
  if (isMap(op)) {
    if (!isMap(old)) throw new ProtocolError("malformed delta: map patch applied to a non-map");
    const out = { ...old };
    for (const key of Object.keys(op)) {
      const sub = op[key];
      if (Array.isArray(sub) && sub.length === 0) {
        if (!(key in out)) throw new ProtocolError(`malformed delta: removal of missing key ${key}`);
        delete out[key];
      } else if (Object.prototype.hasOwnProperty.call(out, key)) {
        out[key] = patch(out[key], sub, depth + 1);
      } else if (isMap(sub) || (Array.isArray(sub) && sub[0] !== 0)) {
        throw new ProtocolError(`malformed delta: patch of missing key ${key}`);
      } else {
        out[key] = patch(null, sub, depth + 1);
      }
    }
    return out;
  }
  if (Array.isArray(op)) {
    if (!op.length) throw new ProtocolError("malformed delta: empty op outside a map");
    const tag = op[0];
    if (tag === 0) {
      if (op.length !== 2) throw new ProtocolError("malformed delta: replace op needs 2 items");
      return op[1];
    }
    if (tag === 1) {
      if (!Array.isArray(old)) throw new ProtocolError("malformed delta: list patch applied to a non-list");
      if (op.length % 2 !== 1) throw new ProtocolError("malformed delta: list patch needs index/op pairs");
      const items = old.slice();
      for (let j = 1; j < op.length; j += 2) {
        const i = op[j];
        if (!Number.isInteger(i) || i < 0 || i >= items.length) throw new ProtocolError(`malformed delta: list index ${i} out of range`);
        items[i] = patch(items[i], op[j + 1], depth + 1);
      }
      return items;
    }
    throw new ProtocolError(`malformed delta: unknown op tag ${tag}`);
  }
  return op;
}

export const STALE = Symbol("stale");

/** Decodes one sender's snapshots, keeping the last `history` decoded states as baselines. */
export class DeltaDecoder {
  constructor(history = 64) { this.history = history; this.states = new Map(); this.newest = null; this.stale = 0; }

  /** Decode snapshot `seq`: full when `baseline` is null, else a delta against it. */
  decode(seq, baseline, body) {
    let state;
    if (baseline === null) state = body;
    else {
      if (!seqGt(seq, baseline)) throw new ProtocolError(`delta baseline ${baseline} is not older than seq ${seq}`);
      if (!this.states.has(baseline)) {
        if (this.newest !== null && !seqGt(seq, this.newest)) { this.stale++; return STALE; }
        throw new ProtocolError(`unknown delta baseline ${baseline} for seq ${seq}`);
      }
      state = patch(this.states.get(baseline), body);
    }
    if (this.newest === null || seqGt(seq, this.newest)) {
      this.newest = seq;
      this.states.set(seq, state);
      for (const old of this.states.keys()) {
        if (((seq - old) & 0xffff) > this.history) this.states.delete(old);
      }
    } else if (((this.newest - seq) & 0xffff) <= this.history) {
      this.states.set(seq, state);
    }
    return state;
  }
}

/** Newest / stale / duplicate judge of snapshot seqs, and loss from gaps. */
export class SnapshotJudge {
  constructor() { this.newest = null; this.seen = new Set(); this.received = 0; this.lostCount = 0; this.duplicates = 0; this.staleCount = 0; }
  /** @returns {"accepted"|"stale"|"duplicate"} */
  push(seq) {
    if (this.seen.has(seq)) { this.duplicates++; return "duplicate"; }
    this.seen.add(seq);
    if (this.seen.size > 256) this.seen.delete(this.seen.values().next().value);
    this.received++;
    if (this.newest === null || seqGt(seq, this.newest)) {
      if (this.newest !== null) this.lostCount += Math.max(0, ((seq - this.newest) & 0xffff) - 1);
      this.newest = seq;
      return "accepted";
    }
    this.lostCount = Math.max(0, this.lostCount - 1);
    this.staleCount++;
    return "stale";
  }
  /** Fraction of snapshots lost. */
  loss() { const total = this.received + this.lostCount; return total ? this.lostCount / total : 0; }
}

/** NTP-style offset and RTT from echo samples (netplay/clock.py). Seconds. */
export class ClockSync {
  constructor(window = 16) {
    this.window = window; this.samplesList = []; this.offset = 0; this.srtt = null; this.rttvar = null;
    this.rttLast = null; this.jitter = null; this.samples = 0; this.rejected = 0;
  }
  onSample(t0, t1, t2, t3) {
    let rtt = (t3 - t0) - (t2 - t1);
    const offset = ((t1 - t0) + (t2 - t3)) / 2;
    if (Number.isFinite(rtt) && rtt > -1e-9 && rtt < 0) rtt = 0;
    if (!Number.isFinite(rtt) || !Number.isFinite(offset) || t3 < t0 || t2 < t1 || rtt < 0) { this.rejected++; return false; }
    this.samples++;
    this.samplesList.push([rtt, offset]);
    if (this.samplesList.length > this.window) this.samplesList.shift();
    let best = this.samplesList[0];
    for (const s of this.samplesList) if (s[0] < best[0]) best = s;
    this.offset = best[1];
    if (this.srtt === null) { this.srtt = rtt; this.rttvar = rtt / 2; this.jitter = 0; }
    else {
      this.rttvar += 0.25 * (Math.abs(this.srtt - rtt) - this.rttvar);
      this.srtt += 0.125 * (rtt - this.srtt);
      this.jitter += (Math.abs(rtt - this.rttLast) - this.jitter) / 16;
    }
    this.rttLast = rtt;
    return true;
  }
  get rttMin() { return this.samplesList.length ? Math.min(...this.samplesList.map((s) => s[0])) : null; }
  toLocal(remoteTime) { return remoteTime - this.offset; }
}

/**
 * Default interpolation: numbers linearly, maps key by key, equal-length arrays element by
 * element, anything else snaps to the newer value (netplay.interpolation.lerp_state).
 */
export function lerpState(a, b, t) {
  if (typeof a === "number" && typeof b === "number") return a === b ? a : a + (b - a) * t;
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) return a.map((x, i) => lerpState(x, b[i], t));
  if (isMap(a) && isMap(b)) {
    const out = {};
    for (const key of Object.keys(b)) out[key] = key in a ? lerpState(a[key], b[key], t) : b[key];
    return out;
  }
  return t > 0 ? b : a;
}

/**
 * Renders a peer's state `delay` seconds in the past, interpolating between snapshots;
 * delay = clamp(ratio * send interval + 2 * jitter, minDelay, maxDelay); capped extrapolation.
 */
export class InterpolationBuffer {
  constructor({ minDelay = 0.05, maxDelay = 0.5, ratio = 2, maxExtrapolation = 0.25, lerp = lerpState, capacity = 64 } = {}) {
    this.minDelay = minDelay; this.maxDelay = maxDelay; this.ratio = ratio;
    this.maxExtrapolation = maxExtrapolation; this.lerp = lerp; this.capacity = capacity;
    this.times = []; this.states = []; this.interval = null; this.jitterValue = 0; this.lastReceived = null;
  }
  get delay() {
    const interval = this.interval ?? 0.05;
    return Math.min(Math.max(this.ratio * interval + 2 * this.jitterValue, this.minDelay), this.maxDelay);
  }
  add(localTime, state, receivedAt) {
    let n = this.times.length;
    if (n && localTime < this.times[n - 1] - Math.max(1, 2 * this.maxDelay)) {
      // Far older than the newest: the time base moved (the clock offset became known or
      // changed, or the sender restarted): start over, as netplay/interpolation.py does.
      this.times = []; this.states = []; this.lastReceived = null; n = 0;
    }
    if (n && localTime <= this.times[n - 1]) {
      if (localTime === this.times[n - 1]) this.states[n - 1] = state;
      return; // a late snapshot: the newer ones already cover its time
    }
    if (n) {
      const gap = Math.min(localTime - this.times[n - 1], Math.max(1, this.maxDelay));
      const dev = this.lastReceived !== null ? Math.abs((receivedAt - this.lastReceived) - gap) : 0;
      this.interval = this.interval === null ? gap : this.interval + (gap - this.interval) / 8;
      this.jitterValue += (Math.min(dev, 1) - this.jitterValue) / 16;
    }
    this.lastReceived = receivedAt;
    this.times.push(localTime); this.states.push(state);
    if (this.times.length > this.capacity) { this.times.shift(); this.states.shift(); }
  }
  sample(now) {
    const n = this.times.length;
    if (!n) return undefined;
    const at = now - this.delay;
    if (n === 1 || at <= this.times[0]) return this.states[at <= this.times[0] ? 0 : n - 1];
    if (at >= this.times[n - 1]) {
      const [t0, t1] = [this.times[n - 2], this.times[n - 1]];
      const over = Math.min(at - t1, this.maxExtrapolation);
      return this.lerp(this.states[n - 2], this.states[n - 1], 1 + over / Math.max(t1 - t0, 1e-6));
    }
    let i = 1;
    while (this.times[i] < at) i++;
    const [t0, t1] = [this.times[i - 1], this.times[i]];
    return this.lerp(this.states[i - 1], this.states[i], (at - t0) / (t1 - t0));
  }
}

// -- delta encoding (netplay/delta.py's diff and DeltaEncoder) -----------------------------------

const SAME = Symbol("same");
const isFloat64 = (v) => v instanceof Float64;

/** A deep copy of a state to keep as a baseline (Float64 wrappers are immutable: shared). */
export function copyState(value) {
  if (Array.isArray(value)) return value.map(copyState);
  if (value instanceof Uint8Array) return value.slice();
  if (isMap(value) && !isFloat64(value)) {
    const out = {};
    for (const key of Object.keys(value)) out[key] = copyState(value[key]);
    return out;
  }
  return value;
}

function sameScalar(a, b) {
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (isFloat64(a) || isFloat64(b)) {
    return isFloat64(a) && isFloat64(b) && (Object.is(a.value, b.value)
      || (a.value !== a.value && b.value !== b.value));
  }
  if (typeof a !== typeof b) return false;
  if (typeof a === "number") return a === b || (a !== a && b !== b);
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length
      && a.every((x, i) => x === b[i]);
  }
  return a === b;
}

const isTree = (v) => Array.isArray(v) || (isMap(v) && !isFloat64(v));
const replaceOp = (v) => (isTree(v) ? [0, v] : v);

function diffOp(old, now) {
  if (isMap(now) && !isFloat64(now)) {
    if (!(isMap(old) && !isFloat64(old))) return [0, now];
    const out = {};
    let changed = false;
    for (const key of Object.keys(now)) {
      if (Object.prototype.hasOwnProperty.call(old, key)) {
        const sub = diffOp(old[key], now[key]);
        if (sub !== SAME) { out[key] = sub; changed = true; }
      } else { out[key] = replaceOp(now[key]); changed = true; }
    }
    for (const key of Object.keys(old)) {
      if (!Object.prototype.hasOwnProperty.call(now, key)) { out[key] = []; changed = true; }
    }
    return changed ? out : SAME;
  }
  if (Array.isArray(now)) {
    if (!Array.isArray(old) || old.length !== now.length) return [0, now];
    const ops = [1];
    let scalars = 0;
    for (let i = 0; i < now.length; i++) {
      const sub = diffOp(old[i], now[i]);
      if (sub !== SAME) { ops.push(i, sub); if (!isTree(sub)) scalars++; }
    }
    const changed = (ops.length - 1) / 2;
    if (changed === 0) return SAME;
    if (scalars === changed && 2 * changed >= now.length) return [0, now];
    return ops;
  }
  if (isTree(old) || !sameScalar(old, now)) return now;
  return SAME;
}

/** The delta op turning `old` into `now` (docs/wire.md section 11); neither is mutated. */
export function diff(old, now) {
  const op = diffOp(old, now);
  if (op !== SAME) return op;
  if (Array.isArray(now)) return [1];
  if (isMap(now) && !isFloat64(now)) return {};
  return now;
}

/** Encodes one receiver's snapshots against the newest one it acknowledged (at most 32 old). */
export class DeltaEncoder {
  constructor(maxBaselineAge = 32) { this.maxBaselineAge = maxBaselineAge; this.sent = new Map(); this.acked = null; }

  /** Remember `state` (a private copy) as snapshot `seq`; returns [baseline, delta] or [null, state]. */
  encode(seq, state) {
    for (const old of [...this.sent.keys()]) {
      if (((seq - old) & 0xffff) <= this.maxBaselineAge) break;
      this.sent.delete(old);
      if (old === this.acked) this.acked = null;
    }
    this.sent.set(seq, state);
    if (this.acked === null) return [null, state];
    return [this.acked, diff(this.sent.get(this.acked), state)];
  }

  /** The receiver decoded `seq`: it becomes the baseline if it is newer and still held. */
  ack(seq) {
    if (!this.sent.has(seq) || (this.acked !== null && !seqGt(seq, this.acked))) return false;
    this.acked = seq;
    for (const old of [...this.sent.keys()]) { if (old === seq) break; this.sent.delete(old); }
    return true;
  }
}
