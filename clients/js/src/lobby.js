// The lobby protocol (docs/lobby.md, netplay/protocol.py): JSON text frames over a WebSocket.
// hello/welcome, requests with ids and their replies, events, ping, resume after a drop.

export const PROTOCOL_VERSION = 1;

/** A request the lobby refused: `code` is the stable error code (lobby_full, bad_password...). */
export class LobbyError extends Error {
  constructor(code, message) { super(`${message} (${code})`); this.name = "LobbyError"; this.code = code; }
}

/**
 * The lobby closed the WebSocket or could not be reached. `closeCode` and `reason` are the
 * WebSocket close code and reason: 1008 "origin not allowed" for a page from an origin the
 * lobby does not accept (--allowed-origins), 1006 when nothing answered.
 */
export class LobbyClosed extends Error {
  constructor(closeCode, reason) {
    super(`lobby connection closed (${closeCode}${reason ? ": " + reason : ""})`);
    this.name = "LobbyClosed"; this.closeCode = closeCode; this.reason = reason;
  }
}

/** One connection (with resumes) to the lobby. */
export class LobbyClient {
  /**
   * @param {string} url ws://host:port/ws
   * @param {string} name display name
   * @param {{token?: string, onMessage: (m: any) => void, onConnection?: (up: boolean, welcome?: any) => void,
   *   pingInterval?: number, requestTimeout?: number, reconnectDelay?: number}} options
   */
  constructor(url, name, options) {
    this.url = url; this.name = name; this.options = options;
    this.ws = null; this.welcome = null; this.peerId = null; this.resumeToken = null;
    this.nextId = 1; this.waiting = new Map(); this.closed = false; this.connected = false;
    this.closeInfo = null; this.pingTimer = null;
  }

  /** Connect and say hello; resolves with the welcome. Rejects with LobbyClosed or LobbyError. */
  async connect() { return this.open(null); }

  open(resume) {
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = new WebSocket(this.url); } catch (err) { reject(new LobbyClosed(1006, String(err))); return; }
      this.ws = ws;
      let helloDone = false;
      ws.onopen = () => {
        const hello = { type: "hello", id: 0, v: PROTOCOL_VERSION, name: this.name };
        if (this.options.token) hello.token = this.options.token;
        if (resume) hello.resume = resume;
        ws.send(JSON.stringify(hello));
      };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (!helloDone && msg.id === 0) {
          helloDone = true;
          if (msg.type === "error") { reject(new LobbyError(msg.code, msg.message)); return; }
          this.welcome = msg; this.peerId = msg.peer_id; this.resumeToken = msg.resume_token;
          this.connected = true;
          this.startPing();
          resolve(msg);
          this.options.onConnection?.(true, msg);
          return;
        }
        this.dispatch(msg);
      };
      ws.onclose = (ev) => {
        this.closeInfo = { code: ev.code, reason: ev.reason };
        const wasUp = this.connected;
        this.connected = false;
        this.stopPing();
        const err = new LobbyClosed(ev.code, ev.reason);
        for (const { reject: r } of this.waiting.values()) r(err);
        this.waiting.clear();
        if (!helloDone) { reject(err); return; }
        if (wasUp) this.options.onConnection?.(false);
        if (!this.closed && ev.code !== 1008) this.reconnect();
      };
    });
  }

  async reconnect() {
    const delay = this.options.reconnectDelay ?? 0.25;
    for (let i = 0; i < 40 && !this.closed; i++) {
      await new Promise((r) => setTimeout(r, delay * 1000 * Math.min(1 + i, 8)));
      if (this.closed) return;
      try { await this.open(this.resumeToken); return; } catch { /* try again */ }
    }
  }

  dispatch(msg) {
    if (msg.id !== undefined && msg.id !== null && this.waiting.has(msg.id)) {
      const { resolve, reject, timer } = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      clearTimeout(timer);
      if (msg.type === "error") reject(new LobbyError(msg.code, msg.message));
      else resolve(msg);
      return;
    }
    this.options.onMessage(msg);
  }

  startPing() {
    this.stopPing();
    const every = (this.options.pingInterval ?? 10) * 1000;
    this.pingTimer = setInterval(() => this.send({ type: "ping" }), every);
  }

  stopPing() { if (this.pingTimer) clearInterval(this.pingTimer); this.pingTimer = null; }

  /** Send without waiting for a reply. */
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(message)); return true; }
    return false;
  }

  /** Send a request with an id; resolves with its reply, rejects with LobbyError. */
  request(message) {
    if (!this.connected) return Promise.reject(new LobbyClosed(this.closeInfo?.code ?? 1006, this.closeInfo?.reason ?? "not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new LobbyError("timeout", `no reply to ${message.type} in time`));
      }, (this.options.requestTimeout ?? 10) * 1000);
      this.waiting.set(id, { resolve, reject, timer });
      this.send({ ...message, id });
    });
  }

  /** Close for good (a deliberate leave: code 1000). */
  close() {
    this.closed = true;
    this.stopPing();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "bye");
  }
}
