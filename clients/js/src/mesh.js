// Mesh: the lobby client plus one RTCPeerConnection per other member, speaking wire v2.
// The JavaScript counterpart of netplay.Mesh (netplay/mesh.py, remote.py); the datagrams are
// DataPlane's (dataplane.js).

import { CONTROL_LANE, ProtocolError } from "./wire.js";
import { LobbyClient } from "./lobby.js";
import { DataPlane, DEFAULT_CHANNELS, now } from "./dataplane.js";

const BYE_LINGER = 0.3;
const CHANNEL_LABEL = "netplay";

export { DEFAULT_CHANNELS, now };

/** The earlier-joined member offers (netplay.protocol.offers_to). */
export function offersTo(me, other) {
  if (me.seq !== other.seq) return me.seq < other.seq;
  return me.id < other.id;
}

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
export class Mesh extends DataPlane {
  /** @param {MeshConfig} config */
  constructor(config) {
    if (!config || typeof config.lobbyUrl !== "string") throw new TypeError("Mesh needs {lobbyUrl: 'ws://host:port/ws'}");
    super(config);
    this.info = null;
    this.aliases = new Map();
    this.closed = false;
    this.opened = false;
    this.leaving = false;
    this.lobbyClient = null;
    this.heartbeatTimer = null;
  }

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
      if (m.peer_id === this.lobbyClient.peerId) {
        // Kicked (or dropped): tell the peers why on the links first, as the Python client
        // does, so that they report "kicked" whether this or the lobby's word comes first.
        this.info = null;
        this.sayBye(m.reason === "kicked" ? "kicked" : "left").finally(() => this.leftLobby());
        return;
      }
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
    const r = {
      id, name, offerer, lobbyId: id, link: null, attempt: 0, failures: 0, connected: false,
      everConnected: false, done: false, ...this.peerData(),
    };
    this.remotes.set(id, r);
    if (offerer) this.offer(r, 0).catch((err) => console.warn("netplay: offer failed", err));
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
  onAlias(r, lobbyId) {
    this.aliases.set(lobbyId, r.id);
    r.lobbyId = lobbyId;
  }

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

}

export { ProtocolError };
