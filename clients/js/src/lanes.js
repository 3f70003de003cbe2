// Lanes: reliable and unreliable messages inside datagrams (docs/wire.md sections 5-9).
// A port of netplay/lanes.py: record ids, piggybacked acks, pieces, RTO + RACK resends,
// proactive copies of small records, the 2,048-id window and a cap on bytes in flight.

import {
  MAX_ACK_BYTES, MAX_EPOCH, WINDOW, ProtocolError, ackedIds, packFragmentRecord, packRecord,
  packUnreliableRecord, unpackBody, DEFAULT_LIMITS,
} from "./wire.js";

export const MAX_RTO = 1.0;
export const MAX_IN_FLIGHT = 12 * 1024;
export const SMALL_RECORD = 300;
export const COPIES = 2;
export const RECORD_OVERHEAD = 24;
export const CONTROL_PRIORITY = 1000;

/** @typedef {{index: number, reliable: boolean, ordered: boolean, priority: number}} LaneSpec */

/**
 * The lanes of a mesh with these channels: the control lane at index 0, then one per channel
 * after the first ("state" has no lane).
 * @param {{name: string, reliable?: boolean, ordered?: boolean, priority?: number}[]} channels
 * @returns {LaneSpec[]}
 */
export function laneSpecs(channels) {
  const specs = [{ index: 0, reliable: true, ordered: true, priority: CONTROL_PRIORITY }];
  channels.forEach((c, index) => {
    if (index) specs.push({ index, reliable: c.reliable !== false, ordered: c.ordered !== false,
      priority: c.priority ?? 0 });
  });
  return specs;
}

/** RFC 6298 smoothed RTT and variance, plus the minimum and latest sample (seconds). */
export class RttEstimator {
  constructor() { this.srtt = null; this.rttvar = 0; this.latest = 0; this.minRtt = Infinity; }
  sample(rtt) {
    rtt = Math.max(rtt, 1e-6);
    this.latest = rtt;
    this.minRtt = Math.min(this.minRtt, rtt);
    if (this.srtt === null) { this.srtt = rtt; this.rttvar = rtt / 2; }
    else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - rtt);
      this.srtt = 0.875 * this.srtt + 0.125 * rtt;
    }
  }
  rto(floor) {
    if (this.srtt === null) return Math.max(floor, 0.2);
    return Math.min(Math.max(this.srtt + 4 * this.rttvar, floor), MAX_RTO);
  }
}

function backoff(rto, sends) {
  return Math.min(rto * (1 << Math.min(sends - 1, 6)), Math.max(rto, MAX_RTO));
}

/** The sending half of one peer's lanes. */
export class Outbound {
  /** @param {LaneSpec[]} lanes */
  constructor(lanes, { pieceSize = 1000, minRto = 0.03, copyGap = 0.015, copies = COPIES } = {}) {
    this.epoch = 1 + Math.floor(Math.random() * (MAX_EPOCH - 1));
    this.pieceSize = pieceSize;
    this.minRto = minRto;
    this.copyGap = copyGap;
    this.copies = copies;
    this.rtt = new RttEstimator();
    this.lanes = new Map(lanes.map((spec) => [spec.index, { spec, queue: [], unreliable: [], nextLseq: 0 }]));
    this.levels = [...new Set(lanes.map((s) => s.priority))].sort((a, b) => b - a)
      .map((p) => [...this.lanes.values()].filter((l) => l.spec.priority === p));
    this.nextRid = 0;
    /** @type {Map<number, any>} rid -> sent record, in rid order */
    this.inFlight = new Map();
    this.order = [];   // [sent, stamp] in send order
    this.lost = [];
    this.copyQueue = [];
    this.rackSent = -Infinity;
    this.undelivered = 0;
    this.pendingByLane = new Map();
    this.waiting = 0;
    this.inFlightBytes = 0;
    this.resent = 0;
  }

  /** Queue one reliable message (its msgpack encoding). */
  push(lane, payload) {
    const out = this.lanes.get(lane);
    const count = payload.length <= this.pieceSize ? 0 : Math.ceil(payload.length / this.pieceSize);
    out.queue.push({ lane, lseq: out.nextLseq++, payload, count, nextIndex: 0, unacked: 0 });
    this.undelivered++;
    this.waiting++;
    this.pendingByLane.set(lane, (this.pendingByLane.get(lane) ?? 0) + 1);
  }

  /** Reliable messages of `lane` not yet acknowledged whole. */
  pending(lane) { return this.pendingByLane.get(lane) ?? 0; }

  pushUnreliable(lane, payload) {
    this.lanes.get(lane).unreliable.push(packUnreliableRecord(lane, payload));
    this.waiting++;
  }

  windowOpen() {
    const oldest = this.inFlight.size ? this.inFlight.keys().next().value : this.nextRid;
    return this.nextRid - oldest < WINDOW && this.inFlightBytes < MAX_IN_FLIGHT;
  }

  hasNew() {
    if (!this.waiting) return false;
    if (this.windowOpen()) return true;
    for (const lane of this.lanes.values()) if (lane.unreliable.length) return true;
    return false;
  }

  hasLost() { return this.lost.length > 0; }
  idle() { return this.inFlight.size === 0 && this.waiting === 0; }

  /** Apply the peer's acks; returns the bytes newly acknowledged. */
  onAcks(acks, now) {
    if (acks.epoch !== this.epoch) return 0;
    let done = 0;
    for (const [rid, sent] of this.inFlight) {
      if (rid >= acks.cum) break;
      this.inFlight.delete(rid);
      done += this.acked(sent, now);
    }
    for (const rid of ackedIds(acks)) {
      const sent = this.inFlight.get(rid);
      if (sent) { this.inFlight.delete(rid); done += this.acked(sent, now); }
    }
    return done;
  }

  acked(sent, now) {
    if (sent.sends === 1) this.rtt.sample(now - sent.firstSent);
    if (sent.lastSent > this.rackSent) this.rackSent = sent.lastSent;
    this.inFlightBytes -= sent.data.length;
    const m = sent.message;
    m.unacked--;
    if (m.unacked === 0 && m.nextIndex >= Math.max(m.count, 1)) {
      this.undelivered--;
      this.pendingByLane.set(m.lane, this.pendingByLane.get(m.lane) - 1);
    }
    return sent.data.length;
  }

  front() {
    while (this.order.length) {
      const [sent, stamp] = this.order[0];
      if (this.inFlight.has(sent.rid) && stamp === sent.lastSent && !sent.lost) return this.order[0];
      this.order.shift();
    }
    return null;
  }

  copyFront() {
    while (this.copyQueue.length) {
      const sent = this.copyQueue[0];
      if (this.inFlight.has(sent.rid) && !sent.lost && sent.copies < this.copies) return sent;
      this.copyQueue.shift();
    }
    return null;
  }

  detectLosses(now) {
    const rto = this.rtt.rto(this.minRto);
    const srtt = this.rtt.srtt ?? rto;
    const reorder = Math.max(this.rtt.minRtt < 1e9 ? this.rtt.minRtt / 4 : 0, 0.002);
    const rackWait = Math.max(this.rtt.latest, srtt * 0.5) + reorder;
    let front;
    while ((front = this.front()) !== null) {
      const [sent, stamp] = front;
      const age = now - stamp;
      const rackLost = stamp < this.rackSent && age >= rackWait;
      if (!(rackLost || age >= backoff(rto, sent.sends))) break;
      this.order.shift();
      sent.lost = true;
      this.lost.push(sent);
    }
  }

  /** When the next resend or copy is due (seconds), or null. */
  nextTimeout() {
    const copy = this.copyFront();
    const front = this.front();
    const resend = front ? front[1] + backoff(this.rtt.rto(this.minRto), front[0].sends) : null;
    if (copy === null) return resend;
    if (resend === null) return copy.nextCopy;
    return Math.min(copy.nextCopy, resend);
  }

  hasDue(now) { const due = this.nextTimeout(); return due !== null && due <= now; }

  /** A new link: whatever was in flight may have died with the old one. */
  resendAll() {
    for (const sent of this.inFlight.values()) {
      if (!sent.lost) { sent.lost = true; this.lost.push(sent); }
    }
    this.order = [];
  }

  /** Records for one datagram: at most `room` bytes; reliable ones while `budget` lasts. */
  take(now, room, budget = Infinity) {
    this.detectLosses(now);
    const out = [];
    const lostByLane = new Map();
    for (const sent of this.lost) {
      if (this.inFlight.has(sent.rid) && sent.lost) {
        if (!lostByLane.has(sent.lane)) lostByLane.set(sent.lane, []);
        lostByLane.get(sent.lane).push(sent);
      }
    }
    this.lost = [];
    for (const level of this.levels) {
      for (const lane of level) {
        while (lane.unreliable.length && (lane.unreliable[0].length <= room || !out.length)) {
          const rec = lane.unreliable.shift();
          this.waiting--;
          out.push(rec);
          room -= rec.length;
        }
        for (const sent of lostByLane.get(lane.spec.index) ?? []) {
          if (sent.data.length > room || budget <= 0) { this.lost.push(sent); continue; }
          sent.lost = false;
          sent.sends++;
          sent.lastSent = now;
          this.order.push([sent, now]);
          this.resent++;
          out.push(sent.data);
          room -= sent.data.length;
          budget -= sent.data.length;
        }
        lostByLane.delete(lane.spec.index);
        while (lane.queue.length && budget > 0 && this.windowOpen()) {
          const piece = this.nextPiece(lane, now, room);
          if (piece === null) break;
          out.push(piece);
          room -= piece.length;
          budget -= piece.length;
        }
      }
    }
    for (const rest of lostByLane.values()) this.lost.push(...rest);
    let copy;
    while (budget > 0 && (copy = this.copyFront()) !== null) {
      if (copy.nextCopy > now || copy.data.length > room) break;
      this.copyQueue.shift();
      out.push(copy.data);
      room -= copy.data.length;
      budget -= copy.data.length;
      copy.copies++;
      copy.nextCopy = now + this.copyGap;
      if (copy.copies < this.copies) this.copyQueue.push(copy);
    }
    return out;
  }

  nextPiece(lane, now, room) {
    const m = lane.queue[0];
    const rid = this.nextRid;
    let data;
    if (m.count === 0) {
      if (m.payload.length + RECORD_OVERHEAD > room) return null;
      data = packRecord(rid, lane.spec.index, m.lseq, m.payload);
      m.nextIndex = 1;
    } else {
      if (this.pieceSize + RECORD_OVERHEAD > room) return null;
      const i = m.nextIndex;
      const piece = m.payload.subarray(i * this.pieceSize, (i + 1) * this.pieceSize);
      data = packFragmentRecord(rid, lane.spec.index, m.lseq, piece, i, m.count);
      m.nextIndex++;
    }
    if (m.nextIndex >= Math.max(m.count, 1)) { lane.queue.shift(); this.waiting--; }
    this.nextRid = rid + 1;
    const sent = { rid, lane: lane.spec.index, data, message: m, firstSent: now, lastSent: now,
      sends: 1, lost: false, copies: 0, nextCopy: 0 };
    if (this.copies && m.count === 0 && data.length <= SMALL_RECORD) {
      sent.nextCopy = now + this.copyGap;
      this.copyQueue.push(sent);
    }
    m.unacked++;
    this.inFlight.set(rid, sent);
    this.order.push([sent, now]);
    this.inFlightBytes += data.length;
    return data;
  }
}

const INCOMPLETE = Symbol("incomplete");
const SKIP = Symbol("skip");

/** A bad message: dropped; `delivered` holds what its lane may deliver now. */
export class BadMessage extends ProtocolError {
  constructor(message, delivered) { super(message); this.name = "BadMessage"; this.delivered = delivered; }
}

/** The receiving half of one peer's lanes. */
export class Inbound {
  /** @param {LaneSpec[]} lanes */
  constructor(lanes, limits = DEFAULT_LIMITS) {
    this.specs = lanes;
    this.limits = limits;
    this.epoch = null;
    this.maxPartialBytes = 2 * limits.maxSize + WINDOW * 1200;
    this.duplicates = 0;
    this.retired = [];
    this.reset();
  }

  reset() {
    this.dupSeen = false;
    this.partialBytes = 0;
    this.cum = 0;
    this.above = new Set();
    this.lanes = new Map(this.specs.map((spec) => [spec.index,
      { spec, nextLseq: 0, ready: new Map(), partial: new Map(), failed: new Set() }]));
    this.dirty = false;
  }

  /** The peer's epoch in a datagram; false for a retired one (ignore its records). */
  onEpoch(epoch) {
    if (epoch === this.epoch) return true;
    if (this.retired.includes(epoch)) return false;
    if (this.epoch !== null) { this.retired.push(this.epoch); if (this.retired.length > 8) this.retired.shift(); }
    this.epoch = epoch;
    this.reset();
    return true;
  }

  /** What to acknowledge in the next datagram, or null before anything arrived. */
  acks() {
    if (this.epoch === null) return null;
    this.dirty = this.dupSeen = false;
    if (!this.above.size) return { epoch: this.epoch, cum: this.cum, bits: new Uint8Array(0) };
    let top = -1;
    for (const rid of this.above) top = Math.max(top, rid - this.cum - 1);
    top = Math.min(top, MAX_ACK_BYTES * 8 - 1);
    const bits = new Uint8Array((top >> 3) + 1);
    const base = this.cum + 1;
    for (const rid of this.above) {
      const i = rid - base;
      if (i >= 0 && i <= top) bits[i >> 3] |= 1 << (i & 7);
    }
    return { epoch: this.epoch, cum: this.cum, bits };
  }

  /** Take one record; returns the [lane, body] messages it completes, in order. */
  receive(record) {
    const lane = this.lanes.get(record.lane);
    const rid = record.rid;
    if (rid === null) {
      if (!lane) throw new ProtocolError(`record on lane ${record.lane}, which is not a lane`);
      if (lane.spec.reliable) throw new ProtocolError(`unreliable record on reliable lane ${record.lane}`);
      return [[record.lane, record.body]];
    }
    if (rid < this.cum || this.above.has(rid)) { this.duplicates++; this.dupSeen = true; return []; }
    if (rid >= this.cum + WINDOW) return [];
    this.dirty = true;
    if (rid === this.cum) {
      this.cum++;
      while (this.above.has(this.cum)) { this.above.delete(this.cum); this.cum++; }
    } else this.above.add(rid);
    if (!lane) throw new ProtocolError(`record on lane ${record.lane}, which is not a lane`);
    if (!lane.spec.reliable) throw new ProtocolError(`reliable record on unreliable lane ${record.lane}`);
    let body;
    if (record.count) {
      try {
        body = this.piece(lane, record);
      } catch (err) {
        const dropped = lane.partial.get(record.lseq);
        if (dropped) { lane.partial.delete(record.lseq); this.partialBytes -= dropped.size; }
        lane.failed.add(record.lseq);
        throw new BadMessage(err.message, this.complete(lane, record.lseq, SKIP));
      }
      if (body === INCOMPLETE) return [];
    } else body = record.body;
    return this.complete(lane, record.lseq, body);
  }

  piece(lane, record) {
    if (lane.failed.has(record.lseq)) return INCOMPLETE;
    if (record.lseq < lane.nextLseq && lane.spec.ordered) throw new ProtocolError("piece of a message already delivered");
    let partial = lane.partial.get(record.lseq);
    if (!partial) { partial = { count: record.count, parts: new Map(), size: 0 }; lane.partial.set(record.lseq, partial); }
    if (partial.count !== record.count || partial.parts.has(record.index)) {
      throw new ProtocolError(`piece ${record.index} of message ${record.lseq} does not fit`);
    }
    const piece = record.body;
    if (partial.size + piece.length > this.limits.maxSize) throw new ProtocolError("message over the size limit");
    if (this.partialBytes + piece.length > this.maxPartialBytes) throw new ProtocolError("too many bytes of half-received messages");
    partial.size += piece.length;
    this.partialBytes += piece.length;
    partial.parts.set(record.index, piece);
    if (partial.parts.size < partial.count) return INCOMPLETE;
    lane.partial.delete(record.lseq);
    this.partialBytes -= partial.size;
    const whole = new Uint8Array(partial.size);
    let at = 0;
    for (let i = 0; i < partial.count; i++) { const p = partial.parts.get(i); whole.set(p, at); at += p.length; }
    return unpackBody(whole, this.limits);
  }

  complete(lane, lseq, body) {
    const index = lane.spec.index;
    if (!lane.spec.ordered) return body === SKIP ? [] : [[index, body]];
    if (lseq !== lane.nextLseq) {
      if (lseq > lane.nextLseq) {
        if (lane.ready.size >= WINDOW) throw new ProtocolError("too many messages waiting for one gap");
        lane.ready.set(lseq, body);
      }
      return [];
    }
    const out = body === SKIP ? [] : [[index, body]];
    lane.nextLseq++;
    while (lane.ready.has(lane.nextLseq)) {
      const next = lane.ready.get(lane.nextLseq);
      lane.ready.delete(lane.nextLseq);
      if (next !== SKIP) out.push([index, next]);
      lane.nextLseq++;
    }
    for (const n of lane.failed) if (n < lane.nextLseq) lane.failed.delete(n);
    return out;
  }
}
