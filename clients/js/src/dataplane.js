// The data plane of a Mesh: datagrams out and in (docs/wire.md), per remote peer. The
// JavaScript counterpart of netplay/dataplane.py; Mesh (mesh.js) adds the lobby and the links.

import {
  CONTROL_LANE, MAX_ACK_DELAY, MAX_DATAGRAM, TARGET_DATAGRAM, packBody, packHead, packTail, unpackDatagram,
  DEFAULT_LIMITS,
} from "./wire.js";
import { BadMessage, Inbound, Outbound, laneSpecs } from "./lanes.js";
import {
  ClockSync, DeltaDecoder, DeltaEncoder, InterpolationBuffer, STALE, SnapshotJudge, copyState,
} from "./state.js";
import { Pacer } from "./pacer.js";

const ACK_DELAY = 0.004;
const FEEDBACK_INTERVAL = 0.05;
const HEADER_ROOM = 64;
const MAX_BURST = 64;

/** The default channels, as in Python: index 0 "state" (snapshots), 1 "events" (reliable, ordered). */
export const DEFAULT_CHANNELS = Object.freeze([
  Object.freeze({ name: "state" }), Object.freeze({ name: "events", reliable: true, ordered: true }),
]);

/** Seconds on a monotonic clock (what `sent_at` carries). */
export const now = () => performance.now() / 1000;

// A "run soon" without setTimeout's 4 ms clamp for nested timers.
const soonChannel = new MessageChannel();
const soonQueue = [];
soonChannel.port1.onmessage = () => { const q = soonQueue.splice(0); for (const fn of q) fn(); };
function soon(fn) { soonQueue.push(fn); if (soonQueue.length === 1) soonChannel.port2.postMessage(0); }

/** Sending and receiving for every remote peer (a base class: Mesh supplies the links). */
export class DataPlane extends EventTarget {
  /** @param {import("./mesh.js").MeshConfig} config */
  constructor(config) {
    super();
    this.config = { name: "player", channels: DEFAULT_CHANNELS, iceServers: [], sendRateHz: 60,
      heartbeatInterval: 0.2, disconnectTimeout: 2.5, connectTimeout: 10, reconnectAttempts: 3,
      deltaCompression: true, ...config };
    this.lanes = laneSpecs([...this.config.channels]);
    /** @type {Map<string, any>} */
    this.remotes = new Map();
    this.tick = 0;
    this.latest = new Map();
  }

  /** Subscribe to an event; the listener gets the event's detail. Returns an unsubscribe function. */
  on(type, listener) {
    const wrapped = (ev) => listener(ev.detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** The data-plane half of a new remote peer's record. */
  peerData() {
    const tick = 1 / this.config.sendRateHz;
    return {
      outbound: new Outbound(this.lanes, { minRto: Math.max(2 * tick, MAX_ACK_DELAY + 0.01), copyGap: Math.max(tick, 0.005) }),
      inbound: new Inbound(this.lanes, DEFAULT_LIMITS),
      outSeq: 0, snapSeq: 0, pending: undefined, pendingState: undefined, pendingTick: 0,
      lastSent: -Infinity, lastSnapshotSent: -Infinity, lastHeard: now(), echo: null,
      decoder: new DeltaDecoder(), encoder: new DeltaEncoder(), pacer: new Pacer(),
      judge: new SnapshotJudge(), clock: new ClockSync(),
      interp: new InterpolationBuffer(this.config.interpolate ? { lerp: this.config.interpolate } : {}),
      flushTimer: null, pumpTimer: null, pumpSoon: false, ackTimer: null, feedbackDue: false,
      stats: { bytesIn: 0, bytesOut: 0, datagramsIn: 0, datagramsOut: 0, badPackets: 0,
        decodeSeconds: 0, snapshotsDecoded: 0, deltaBytesSaved: 0 },
    };
  }

  /** Mesh: a link failed (or timed out). */
  linkDown(r, attempt, why) { void r; void attempt; void why; }

  /** Mesh: stop talking to `r`. */
  dropRemote(r, reason, forget = true) { void r; void reason; void forget; }

  /** Mesh: the peer's lobby id changed. */
  onAlias(r, lobbyId) { void r; void lobbyId; }

  // -- sending -------------------------------------------------------------------------------

  targets(to, reconnecting = false) {
    const ok = (r) => (r.connected && r.link) || (reconnecting && r.everConnected && !r.done);
    if (to === undefined || to === null) return [...this.remotes.values()].filter(ok);
    if (typeof to !== "string") throw new TypeError("to must be a peer id (string) or null");
    const r = this.remotes.get(to);
    return r && ok(r) ? [r] : [];
  }

  /**
   * Send our state unreliably to `to` or every connected peer; newest wins; delta-encoded
   * against the newest state each peer acknowledged (config.deltaCompression). Returns false
   * when nobody was addressed.
   * Throws TypeError / RangeError for a value that cannot be sent (see wire.js numeric rules).
   * @param {unknown} state @param {string | null} [to]
   * @param {{tick?: number}} [options]
   */
  sendState(state, to = null, { tick } = {}) {
    const packed = packBody(state);
    if (packed.length > MAX_DATAGRAM - 2 * HEADER_ROOM) throw new RangeError(`state of ${packed.length} bytes is over one datagram`);
    if (tick === undefined) tick = ++this.tick;
    else if (!Number.isSafeInteger(tick)) throw new TypeError("tick must be an integer within ±2^53");
    const targets = this.targets(to);
    // one private copy for every receiver's delta encoder (the game may mutate its state)
    const kept = this.config.deltaCompression && targets.length ? copyState(state) : undefined;
    for (const r of targets) {
      r.pending = packed; r.pendingState = kept; r.pendingTick = tick;
      this.scheduleFlush(r);
    }
    return targets.length > 0;
  }

  /** Send an event reliably (ordered, exactly once) on "events". Returns false when nobody was addressed. */
  sendEvent(body, to = null) { return this.sendOn(1, body, to); }

  /** Send on a configured channel by name (reliable or unreliable, as configured). */
  send(channel, body, to = null) {
    const index = this.config.channels.findIndex((c) => c.name === channel);
    if (index < 0) throw new Error(`no channel named ${channel}`);
    if (index === 0) return this.sendState(body, to);
    return this.sendOn(index, body, to);
  }

  sendOn(index, body, to) {
    const payload = packBody(body);
    const spec = this.lanes.find((l) => l.index === index);
    if (spec.reliable) {
      if (payload.length > DEFAULT_LIMITS.maxSize) throw new RangeError(`message of ${payload.length} bytes is over the 8 MiB limit`);
      const targets = this.targets(to, true);
      for (const r of targets) { r.outbound.push(index, payload); if (r.connected) this.wake(r); }
      return targets.length > 0;
    }
    if (payload.length > MAX_DATAGRAM - 2 * HEADER_ROOM) throw new RangeError("unreliable message over one datagram");
    const targets = this.targets(to);
    for (const r of targets) { r.outbound.pushUnreliable(index, payload); this.wake(r); }
    return targets.length > 0;
  }

  sendControl(r, body) { r.outbound.push(CONTROL_LANE, packBody(body)); if (r.connected) this.wake(r); }

  scheduleFlush(r) {
    if (r.flushTimer !== null) return;
    const wait = r.lastSnapshotSent + 1 / this.config.sendRateHz - now();
    if (wait > 0) r.flushTimer = setTimeout(() => this.flush(r), wait * 1000);
    else this.flush(r);
  }

  flush(r) {
    r.flushTimer = null;
    const link = r.link;
    if (!link || !r.connected || r.pending === undefined) return;
    if (link.channel.bufferedAmount > (r.outbound.idle() ? 0 : 2400)) {
      r.flushTimer = setTimeout(() => this.flush(r), 1000 / this.config.sendRateHz);
      return;
    }
    this.sendDatagram(r, now(), true);
    if (r.outbound.hasNew() || r.outbound.hasLost()) this.wake(r);
  }

  buildHead(r, t, snapshot) {
    const seq = r.outSeq;
    r.outSeq = (seq + 1) & 0xffff;
    r.lastSent = t;
    const ack = r.decoder.newest;
    if (snapshot && r.pending !== undefined) {
      const snapSeq = r.snapSeq;
      r.snapSeq = (snapSeq + 1) & 0xffff;
      let baseline = null, body = r.pending;
      if (r.pendingState !== undefined) {
        const [base, op] = r.encoder.encode(snapSeq, r.pendingState);
        if (base !== null) {
          baseline = base;
          body = packBody(op);
          r.stats.deltaBytesSaved += r.pending.length - body.length;
        }
      }
      const head = packHead(seq, t, r.echo, ack, [snapSeq, r.pendingTick, baseline], body);
      r.pending = undefined;
      r.pendingState = undefined;
      r.lastSnapshotSent = t;
      return head;
    }
    return packHead(seq, t, r.echo, ack);
  }

  sendDatagram(r, t, snapshot) {
    const link = r.link;
    const head = this.buildHead(r, t, snapshot);
    const acks = r.inbound.acks();
    let room = TARGET_DATAGRAM - head.length - HEADER_ROOM - (acks ? acks.bits.length : 0);
    if (head.length <= HEADER_ROOM) room = Math.max(room, r.outbound.pieceSize + 32);
    const budget = link.channel.bufferedAmount === 0 ? r.pacer.available(t) : 0;
    const records = r.outbound.idle() || room <= 0 ? [] : r.outbound.take(t, room, budget);
    const tail = packTail(r.outbound.epoch, acks, records);
    const frame = new Uint8Array(head.length + tail.length);
    frame.set(head); frame.set(tail, head.length);
    if (link.channel.readyState !== "open") return 0;
    try { link.channel.send(frame); } catch { return 0; }
    r.feedbackDue = false;
    r.pacer.spend(frame.length);
    r.stats.bytesOut += frame.length; r.stats.datagramsOut++;
    return frame.length;
  }

  /** Something waits to go to `r`: pump once the current task is done (sends share datagrams). */
  wake(r) {
    if (r.pumpSoon) return;
    r.pumpSoon = true;
    soon(() => { r.pumpSoon = false; this.pump(r); });
  }

  pumpLater(r, at) {
    if (r.pumpTimer !== null && r.pumpAt <= at) return;
    clearTimeout(r.pumpTimer);
    r.pumpAt = at;
    r.pumpTimer = setTimeout(() => { r.pumpTimer = null; this.pump(r); }, Math.max(0, (at - now()) * 1000));
  }

  pump(r) {
    const link = r.link;
    if (!link || !link.opened || link.closed || !r.connected) return;
    const out = r.outbound;
    let t = now();
    let i = 0;
    for (; i < MAX_BURST; i++) {
      if (link.channel.bufferedAmount > 0) { r.pacer.markLimited(); return; } // wakes on low
      const work = out.hasNew() || out.hasLost() || out.hasDue(t);
      const ack = r.inbound.dirty || r.feedbackDue;
      if (!work && !ack) break;
      if (work && !ack && r.pacer.available(t) <= 0) {
        this.pumpLater(r, t + Math.max(r.pacer.wait(TARGET_DATAGRAM, t), 0.0005));
        return;
      }
      if (!this.sendDatagram(r, t, false)) return;
      if (!(out.hasNew() || out.hasLost())) break;
      t = now();
    }
    if (i === MAX_BURST) { this.wake(r); return; }
    const due = out.nextTimeout();
    if (due !== null) this.pumpLater(r, due);
  }

  heartbeat() {
    const t = now();
    for (const r of this.remotes.values()) {
      if (!r.link || !r.connected) continue;
      if (t - r.lastHeard >= this.config.disconnectTimeout) { this.linkDown(r, r.link.attempt, "timed_out"); continue; }
      if (t - r.lastSent >= this.config.heartbeatInterval && r.flushTimer === null) this.sendDatagram(r, t, false);
    }
  }

  // -- receiving -----------------------------------------------------------------------------

  bad(r, why) {
    r.stats.badPackets++;
    const t = now();
    if (!(r.lastWarned > t - 10)) { r.lastWarned = t; console.warn(`netplay: dropped bad packet from ${r.id}: ${why}`); }
  }

  onFrame(r, data) {
    const t = now();
    r.lastHeard = t;
    r.stats.datagramsIn++;
    if (typeof data === "string") { r.stats.bytesIn += data.length; this.bad(r, "text message"); return; }
    const frame = new Uint8Array(data);
    r.stats.bytesIn += frame.length;
    let d;
    const started = performance.now();
    try { d = unpackDatagram(frame); } catch (err) { this.bad(r, err.message); return; }
    r.echo = [d.sentAt, t];
    if (d.echo) r.clock.onSample(d.echo[0], d.echo[1], d.sentAt, t);
    if (d.ack !== null) r.encoder.ack(d.ack);
    let snapshotOk = true;
    if (d.snapshot) {
      try {
        const s = d.snapshot;
        const state = r.decoder.decode(s.seq, s.baseline, s.body);
        r.stats.decodeSeconds += (performance.now() - started) / 1000;
        r.stats.snapshotsDecoded++;
        if (state !== STALE && r.judge.push(s.seq) === "accepted" && r.connected) {
          r.interp.add(r.clock.toLocal(d.sentAt), state, t);
          this.latest.set(r.id, { state, tick: s.tick });
          this.emit("state", { peer: r.id, state, tick: s.tick });
        }
      } catch (err) { this.bad(r, err.message); snapshotOk = false; }
    }
    if (!snapshotOk) return;
    if (d.acks && r.outbound.onAcks(d.acks, t)) {
      // the path's round trip without the peer's holding time (a Python peer's ack may wait
      // for its next snapshot, up to MAX_ACK_DELAY): queueing is what pacing follows
      r.pacer.onRtt(d.echo && r.clock.rttLast !== null ? r.clock.rttLast : r.outbound.rtt.latest, t);
      this.wake(r);
    }
    if (!r.inbound.onEpoch(d.epoch)) return;
    for (const record of d.records) {
      let delivered;
      try { delivered = r.inbound.receive(record); } catch (err) {
        this.bad(r, err.message);
        delivered = err instanceof BadMessage ? err.delivered : [];
      }
      for (const [lane, body] of delivered) {
        if (lane === CONTROL_LANE) this.onControl(r, body);
        else this.emit("message", { peer: r.id, channel: this.config.channels[lane].name, body });
      }
    }
    if (r.inbound.dirty) {
      if (r.ackTimer === null) r.ackTimer = setTimeout(() => { r.ackTimer = null; if (r.inbound.dirty) this.pump(r); }, ACK_DELAY * 1000);
    } else if ((d.snapshot || r.inbound.dupSeen) && !r.feedbackDue) {
      r.feedbackDue = true;
      this.pumpLater(r, Math.max(t + ACK_DELAY, r.lastSent + FEEDBACK_INTERVAL));
    }
  }

  onControl(r, body) {
    if (!(Array.isArray(body) && body.length === 2 && typeof body[1] === "string" && body[1].length > 0 && body[1].length <= 64)) {
      this.bad(r, "bad control message");
    } else if (body[0] === "bye") {
      this.dropRemote(r, body[1] === "kicked" ? "kicked" : "left", false);
    } else if (body[0] === "alias") {
      this.onAlias(r, body[1]);
    } else this.bad(r, `unknown control message ${body[0]}`);
  }

  // -- reading -------------------------------------------------------------------------------

  /** The newest state received from each connected peer: {peerId: state}. */
  states() {
    const out = {};
    for (const [id, v] of this.latest) out[id] = v.state;
    return out;
  }

  /** Each connected peer's state for rendering at `t` (seconds, default now), interpolated in the past. */
  interpolated(t = now()) {
    const out = {};
    for (const r of this.remotes.values()) {
      if (r.connected && this.latest.has(r.id)) out[r.id] = r.interp.sample(t);
    }
    return out;
  }

  /** Link figures of one peer (RTT, jitter, loss, bytes, bad packets, decode cost). */
  stats(peer) {
    const r = this.remotes.get(peer);
    if (!r) throw new Error(`no peer ${peer} in this mesh`);
    return { rtt: r.clock.srtt ?? r.outbound.rtt.srtt, rttMin: r.clock.rttMin, jitter: r.clock.jitter,
      clockOffset: r.clock.offset, loss: r.judge.loss(), interpDelay: r.interp.delay,
      resent: r.outbound.resent, duplicates: r.inbound.duplicates, inFlight: r.outbound.inFlight.size,
      pacingRate: r.pacer.rate,
      undelivered: r.outbound.undelivered, ...r.stats };
  }
}
