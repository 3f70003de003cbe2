// Mesh: the lobby client plus one RTCPeerConnection per other member, speaking wire v2.
// The JavaScript counterpart of netplay.Mesh (netplay/mesh.py, remote.py, dataplane.py).

import {
  CONTROL_LANE, MAX_DATAGRAM, TARGET_DATAGRAM, ProtocolError, packBody, packHead, packTail,
  unpackDatagram, DEFAULT_LIMITS,
} from "./wire.js";
import { BadMessage, Inbound, Outbound, laneSpecs } from "./lanes.js";
import {
  ClockSync, DeltaDecoder, DeltaEncoder, InterpolationBuffer, STALE, SnapshotJudge, copyState,
} from "./state.js";
import { LobbyClient } from "./lobby.js";
import { Pacer } from "./pacer.js";

const ACK_DELAY = 0.004;
const FEEDBACK_INTERVAL = 0.05;
const HEADER_ROOM = 64;
const MAX_BURST = 64;
const BYE_LINGER = 0.3;
const CHANNEL_LABEL = "netplay";

/** The default channels, as in Python: index 0 "state" (snapshots), 1 "events" (reliable, ordered). */
export const DEFAULT_CHANNELS = Object.freeze([
  Object.freeze({ name: "state" }), Object.freeze({ name: "events", reliable: true, ordered: true }),
]);

/** Seconds on a monotonic clock (what `sent_at` carries). */
export const now = () => performance.now() / 1000;

/** The earlier-joined member offers (netplay.protocol.offers_to). */
export function offersTo(me, other) {
  if (me.seq !== other.seq) return me.seq < other.seq;
  return me.id < other.id;
}

// A "run soon" without setTimeout's 4 ms clamp for nested timers.
const soonChannel = new MessageChannel();
const soonQueue = [];
soonChannel.port1.onmessage = () => { const q = soonQueue.splice(0); for (const fn of q) fn(); };
function soon(fn) { soonQueue.push(fn); if (soonQueue.length === 1) soonChannel.port2.postMessage(0); }

/**
 * @typedef {object} MeshConfig
 * @property {string} lobbyUrl ws://host:port/ws
 * @property {string} [name] display name
 * @property {string} [token] auth token for the lobby
 * @property {{name: string, reliable?: boolean, ordered?: boolean, priority?: number}[]} [channels]
 *   must equal every peer's channel list (names, order, kinds)
 * @property {RTCIceServer[]} [iceServers] besides those the lobby hands out
 * @property {number} [sendRateHz] state datagrams per second at most (60)
 * @property {number} [heartbeatInterval] seconds (0.2)
 * @property {number} [disconnectTimeout] seconds of silence before a peer is gone (2.5)
 * @property {number} [connectTimeout] seconds for a link to open (10)
 * @property {number} [reconnectAttempts] link rebuilds in a row before giving up (3)
 * @property {(a: any, b: any, t: number) => any} [interpolate] custom lerp for interpolated()
 * @property {boolean} [deltaCompression] send states as deltas against the newest one each
 *   peer acknowledged (true)
 */

/** A session: lobby connection plus a full WebRTC mesh. Events: peerJoined, peerLeft,
 * hostChanged, message, state, lobby, lobbyConnection. */
export class Mesh extends EventTarget {
  /** @param {MeshConfig} config */
  constructor(config) {
    super();
    if (!config || typeof config.lobbyUrl !== "string") throw new TypeError("Mesh needs {lobbyUrl: 'ws://host:port/ws'}");
    this.config = { name: "player", channels: DEFAULT_CHANNELS, iceServers: [], sendRateHz: 60,
      heartbeatInterval: 0.2, disconnectTimeout: 2.5, connectTimeout: 10, reconnectAttempts: 3,
      deltaCompression: true, ...config };
    this.lanes = laneSpecs([...this.config.channels]);
    this.remotes = new Map();
    this.info = null;
    this.tick = 0;
    this.latest = new Map();
    this.aliases = new Map();
    this.closed = false;
    this.opened = false;
    this.lobbyClient = null;
    this.heartbeatTimer = null;
  }

  /** Subscribe to an event; the listener gets the event's detail. Returns an unsubscribe function. */
  on(type, listener) {
    const wrapped = (ev) => listener(ev.detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** Connect to the lobby. Rejects with LobbyClosed (close code and reason) or LobbyError. */
  async open() {
    if (this.opened) throw new Error("a Mesh can be opened only once; create a new Mesh instead");
    this.opened = true;
    this.lobbyClient = new LobbyClient(this.config.lobbyUrl, this.config.name, {
      token: this.config.token, onMessage: (m) => this.onLobbyMessage(m),
      onConnection: (up, welcome) => this.onLobbyConnection(up, welcome),
    });
    this.welcome = await this.lobbyClient.connect();
    this.identity = this.welcome.peer_id;
    const period = Math.min(this.config.heartbeatInterval / 2, 0.05) * 1000;
    this.heartbeatTimer = setInterval(() => this.heartbeat(), period);
    return this;
  }

  /** Our peer id. */
  get peerId() { return this.identity; }
  /** Ids of the peers connected right now. */
  get peers() { return [...this.remotes.values()].filter((r) => r.connected).map((r) => r.id); }
  /** The lobby state ({code, host, members, ...}) or null. */
  get lobby() { return this.info; }
  /** True when we host the current lobby. */
  get isHost() { return this.info !== null && this.info.host === this.lobbyClient?.peerId; }

  // -- lobby requests ------------------------------------------------------------------------

  async enter(request) {
    if (this.info) throw new Error(`already in lobby ${this.info.code}; call leave() first`);
    const reply = await this.lobbyClient.request(request);
    this.setLobby(reply.lobby);
    return reply.lobby;
  }

  /** Create a lobby and become its host; resolves with the lobby state (`.code` to share). */
  host({ game, gameVersion = "", maxPlayers = 8, public: isPublic = true, password, metadata = {} }) {
    const req = { type: "host", game, game_version: gameVersion, max_players: maxPlayers, public: isPublic, metadata };
    if (password !== undefined) req.password = password;
    return this.enter(req);
  }

  /** Join a lobby by code. Rejects with LobbyError (.code: lobby_not_found, lobby_full, ...). */
  join(code, password) {
    const req = { type: "join", code };
    if (password !== undefined) req.password = password;
    return this.enter(req);
  }

  /** Join the fullest open public lobby of this game, or create one. */
  quickMatch({ game, gameVersion = "", maxPlayers = 8, filter = {} }) {
    return this.enter({ type: "quick_match", game, game_version: gameVersion, max_players: maxPlayers, filter });
  }

  /** Open public lobbies, fullest first. */
  async listLobbies(game, filter = {}) {
    const req = { type: "list", filter };
    if (game) req.game = game;
    return (await this.lobbyClient.request(req)).lobbies;
  }

  /** Host only: replace the lobby's metadata (shown in listings). */
  async setMetadata(metadata) { this.setLobby((await this.lobbyClient.request({ type: "set_metadata", metadata })).lobby); }

  /** Host only: refuse new joins. */
  async lock() { this.setLobby((await this.lobbyClient.request({ type: "lock" })).lobby); }

  /** Host only: accept new joins again. */
  async unlock() { this.setLobby((await this.lobbyClient.request({ type: "unlock" })).lobby); }

  /** Host only: remove a member from the lobby. */
  async kick(peer) { await this.lobbyClient.request({ type: "kick", peer: this.remotes.get(peer)?.lobbyId ?? peer }); }

  /** Ping the lobby; resolves with the round trip in seconds. */
  async ping() {
    const t = now();
    await this.lobbyClient.request({ type: "ping", t });
    return now() - t;
  }

  /** Leave the lobby and disconnect from every peer (the session stays open). */
  async leave() {
    if (!this.info) return;
    this.leaving = true;
    try {
      await this.sayBye("left");
      await this.lobbyClient.request({ type: "leave" });
      this.leftLobby();
    } finally { this.leaving = false; }
  }

  /** Say goodbye, leave, close everything. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    await this.sayBye("left");
    clearInterval(this.heartbeatTimer);
    for (const r of [...this.remotes.values()]) this.dropRemote(r, "left");
    this.lobbyClient?.close();
  }

  // -- lobby messages ------------------------------------------------------------------------

  key(lobbyId) { return this.aliases.get(lobbyId) ?? lobbyId; }

  setLobby(info) {
    const old = this.info;
    this.info = info;
    if (info && old && old.host !== info.host) {
      this.emit("hostChanged", { host: this.key(info.host), isMe: info.host === this.lobbyClient.peerId });
    }
    this.emit("lobby", info);
    this.reconcile();
  }

  onLobbyMessage(m) {
    if (this.closed) return;
    const info = this.info;
    if (m.type === "lobby") this.setLobby(m.lobby);
    else if (m.type === "signal") {
      const key = this.key(m.from);
      const r = this.remotes.get(key) ?? this.addRemote(key, "?", false);
      this.handleSignal(r, m.payload).catch((err) => console.warn(`netplay: bad signal from ${key}:`, err));
    } else if (m.type === "peer_joined" && info) {
      const members = info.members.filter((x) => x.id !== m.peer.id).concat([m.peer]);
      this.setLobby({ ...info, members });
    } else if (m.type === "peer_left" && info) {
      if (m.peer_id === this.lobbyClient.peerId) { this.leftLobby(); return; }
      const r = this.remotes.get(this.key(m.peer_id));
      if (r) this.dropRemote(r, m.reason);
      this.setLobby({ ...info, members: info.members.filter((x) => x.id !== m.peer_id) });
    } else if (m.type === "host_changed" && info) {
      this.setLobby({ ...info, host: m.host });
    }
  }

  onLobbyConnection(up, welcome) {
    this.emit("lobbyConnection", { connected: up, resumed: !!welcome?.resumed, closeCode: this.lobbyClient.closeInfo?.code });
    if (up && welcome.resumed && welcome.lobby) this.setLobby(welcome.lobby);
    else if (up && !welcome.resumed && this.info) { this.info = null; this.emit("lobby", null); }
    if (up && !welcome.resumed && this.identity !== undefined && welcome.peer_id !== this.identity) {
      // The lobby forgot us (it restarted): links keep working; tell the peers our new lobby
      // id so that they recognise us in a later lobby (the "alias" control message).
      for (const r of this.remotes.values()) if (r.connected) this.sendControl(r, ["alias", welcome.peer_id]);
    }
  }

  leftLobby() {
    this.info = null;
    for (const r of [...this.remotes.values()]) this.dropRemote(r, "left");
    this.emit("lobby", null);
  }

  me() { return this.info?.members.find((m) => m.id === this.lobbyClient.peerId) ?? null; }

  reconcile() {
    const me = this.me();
    if (!me) return;
    for (const member of this.info.members) {
      if (member.id === me.id) continue;
      const r = this.remotes.get(this.key(member.id));
      if (!r) this.addRemote(member.id, member.name, offersTo(me, member));
      else if (r.name === "?") r.name = member.name;
    }
  }

  // -- remotes and links ---------------------------------------------------------------------

  addRemote(id, name, offerer) {
    const tick = 1 / this.config.sendRateHz;
    const r = {
      id, name, offerer, lobbyId: id, link: null, attempt: 0, failures: 0, connected: false,
      everConnected: false, done: false,
      outbound: new Outbound(this.lanes, { minRto: 2 * tick, copyGap: Math.max(tick, 0.005) }),
      inbound: new Inbound(this.lanes, DEFAULT_LIMITS),
      outSeq: 0, snapSeq: 0, pending: undefined, pendingTick: 0, lastSent: -Infinity,
      lastSnapshotSent: -Infinity, lastHeard: now(), echo: null, decoder: new DeltaDecoder(),
      encoder: new DeltaEncoder(), pendingState: undefined, pacer: new Pacer(),
      judge: new SnapshotJudge(), clock: new ClockSync(),
      interp: new InterpolationBuffer(this.config.interpolate ? { lerp: this.config.interpolate } : {}),
      flushTimer: null, pumpTimer: null, pumpSoon: false, ackTimer: null, feedbackDue: false,
      stats: { bytesIn: 0, bytesOut: 0, datagramsIn: 0, datagramsOut: 0, badPackets: 0,
        decodeSeconds: 0, snapshotsDecoded: 0, deltaBytesSaved: 0 },
    };
    this.remotes.set(id, r);
    if (offerer) this.offer(r, 0);
    this.armConnectTimeout(r);
    return r;
  }

  armConnectTimeout(r) {
    clearTimeout(r.connectTimer);
    const attempt = r.attempt;
    r.connectTimer = setTimeout(() => {
      if (!r.done && !r.connected && r.attempt === attempt) this.linkDown(r, attempt, "connect timeout");
    }, this.config.connectTimeout * 1000);
  }

  iceServers() {
    const lobbyServers = (this.welcome?.ice_servers ?? []).map((s) => ({ urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined }));
    return [...this.config.iceServers, ...lobbyServers];
  }

  newLink(r, attempt) {
    this.closeLink(r);
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    const channel = pc.createDataChannel(CHANNEL_LABEL, { negotiated: true, id: 0, ordered: false, maxRetransmits: 0 });
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = 0;
    const link = { pc, channel, attempt, opened: false, closed: false, sdpSent: false };
    r.link = link;
    r.attempt = attempt;
    channel.onopen = () => this.linkOpened(r, link);
    channel.onclose = () => this.linkDown(r, attempt, "channel closed");
    channel.onmessage = (ev) => { if (r.link === link) this.onFrame(r, ev.data); };
    channel.onbufferedamountlow = () => { if (r.link === link) this.wake(r); };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this.linkDown(r, attempt, `connection ${pc.connectionState}`);
    };
    pc.onicecandidate = (ev) => {
      // Candidates found after the description went out are trickled (aiortc accepts them).
      if (link.sdpSent && r.link === link) {
        const c = ev.candidate;
        this.signal(r, { kind: "candidate", candidate: c ? c.candidate : "", sdp_mid: c?.sdpMid ?? null,
          sdp_mline_index: c?.sdpMLineIndex ?? null, attempt });
      }
    };
    return link;
  }

  closeLink(r) {
    const link = r.link;
    r.link = null;
    clearTimeout(r.flushTimer); r.flushTimer = null;
    clearTimeout(r.pumpTimer); r.pumpTimer = null;
    clearTimeout(r.ackTimer); r.ackTimer = null;
    if (link && !link.closed) { link.closed = true; try { link.pc.close(); } catch { /* closed */ } }
  }

  async localDescription(link) {
    // Send the description with its candidates inside (as aiortc does); whatever comes later
    // is trickled.
    const pc = link.pc;
    if (pc.iceGatheringState !== "complete") {
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 1000);
        pc.addEventListener("icegatheringstatechange", () => {
          if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
        });
      });
    }
    link.sdpSent = true;
    return pc.localDescription.sdp;
  }

  async offer(r, attempt) {
    const link = this.newLink(r, attempt);
    await link.pc.setLocalDescription(await link.pc.createOffer());
    const sdp = await this.localDescription(link);
    if (r.link === link) this.signal(r, { kind: "offer", sdp, attempt });
  }

  signal(r, payload) {
    if (!this.info || this.leaving) return;
    this.lobbyClient.send({ type: "signal", to: r.lobbyId, payload });
  }

  async handleSignal(r, payload) {
    if (r.done) return;
    const link = r.link;
    if (payload.kind === "offer") {
      if (r.offerer) return;
      if (link && link.attempt >= payload.attempt && !link.closed) return;
      if (link) this.lost(r, "connection_failed");
      const fresh = this.newLink(r, payload.attempt);
      this.armConnectTimeout(r);
      await fresh.pc.setRemoteDescription({ type: "offer", sdp: payload.sdp });
      await fresh.pc.setLocalDescription(await fresh.pc.createAnswer());
      const sdp = await this.localDescription(fresh);
      if (r.link === fresh) this.signal(r, { kind: "answer", sdp, attempt: payload.attempt });
      return;
    }
    if (!link || link.attempt !== payload.attempt) return;
    if (payload.kind === "answer") {
      if (link.pc.signalingState === "have-local-offer") await link.pc.setRemoteDescription({ type: "answer", sdp: payload.sdp });
    } else if (payload.kind === "candidate" && link.pc.remoteDescription) {
      await link.pc.addIceCandidate(payload.candidate
        ? { candidate: payload.candidate, sdpMid: payload.sdp_mid, sdpMLineIndex: payload.sdp_mline_index }
        : null);
    }
  }

  linkOpened(r, link) {
    if (r.link !== link || link.closed || r.connected) return;
    link.opened = true;
    r.connected = r.everConnected = true;
    r.failures = 0;
    r.lastHeard = now();
    clearTimeout(r.connectTimer);
    this.emit("peerJoined", { peer: r.id, name: r.name });
    r.outbound.resendAll();
    this.wake(r);
    if (r.pending !== undefined) this.scheduleFlush(r);
  }

  lost(r, reason) {
    if (r.connected) {
      r.connected = false;
      this.latest.delete(r.id);
      this.emit("peerLeft", { peer: r.id, reason });
    }
  }

  /** A link failed (or never opened): report, then re-offer (we offer) or wait for an offer. */
  linkDown(r, attempt, why) {
    if (r.done) return;
    const link = r.link;
    if (link ? link.attempt !== attempt || link.closed : why !== "connect timeout") return;
    this.lost(r, why === "timed_out" ? "timed_out" : "connection_failed");
    this.closeLink(r);
    r.failures++;
    if (r.failures > this.config.reconnectAttempts) {
      r.done = true;
      if (!r.everConnected) this.emit("peerLeft", { peer: r.id, reason: "connection_failed" });
      return;
    }
    if (this.closed || !this.info) return;
    if (r.offerer) this.offer(r, attempt + 1).catch((err) => console.warn("netplay: re-offer failed", err));
    else r.attempt = attempt;
    this.armConnectTimeout(r);
  }

  /** Stop talking to `r`; `forget` (the lobby said it left) removes its record, else (it
   * said goodbye on the link) the record stays, done, until the lobby's peer_left, so that a
   * lobby update in between does not connect to it again. */
  dropRemote(r, reason, forget = true) {
    if (forget) this.remotes.delete(r.id);
    this.lost(r, reason === "kicked" ? "kicked" : reason === "timed_out" ? "timed_out" : "left");
    r.done = true;
    clearTimeout(r.connectTimer);
    this.closeLink(r);
  }

  async sayBye(reason) {
    const waiting = [];
    for (const r of this.remotes.values()) {
      if (r.connected && r.link) { this.sendControl(r, ["bye", reason]); waiting.push(r); }
    }
    const deadline = now() + BYE_LINGER;
    while (waiting.length && now() < deadline && !waiting.every((r) => r.outbound.pending(CONTROL_LANE) === 0)) {
      await new Promise((res) => setTimeout(res, 10));
    }
  }

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
      r.pacer.onRtt(r.outbound.rtt.latest, t);
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
      this.aliases.set(body[1], r.id);
      r.lobbyId = body[1];
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

export { ProtocolError };
