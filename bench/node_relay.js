// The reference for `python -m bench --only lobby`: a minimal Node `ws` relay, the kind a WebRTC
// signaling tutorial builds, speaking just enough of the lobby protocol for the load generator
// (hello -> welcome, host/join -> lobby, signal -> relayed signal stamped with `from`).
// It validates nothing beyond JSON.parse and keeps everything in memory.
//
//   NODE_PATH=/usr/share/nodejs node bench/node_relay.js PORT     (Debian's node-ws package)
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 0);
const peers = new Map(); // id -> socket
const lobbies = new Map(); // code -> Set of ids
let nextId = 0;

const wss = new WebSocketServer({ host: "127.0.0.1", port, backlog: 4096 });
wss.on("listening", () => console.log(`listening ${wss.address().port}`));
wss.on("connection", (ws) => {
  const id = `n${(nextId++).toString(36)}`;
  let lobby = null;
  ws.on("message", (data) => {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      ws.send(JSON.stringify({ type: "error", code: "bad_message", message: "bad JSON" }));
      return;
    }
    switch (m.type) {
      case "hello":
        peers.set(id, ws);
        ws.send(JSON.stringify({ type: "welcome", id: m.id, v: m.v, peer_id: id,
                                 resume_token: id, ice_servers: [] }));
        break;
      case "host": {
        const code = `C${(nextId++).toString(36)}`;
        lobby = new Set([id]);
        lobbies.set(code, lobby);
        ws.send(JSON.stringify({ type: "lobby", id: m.id, lobby: { code, host: id } }));
        break;
      }
      case "join":
        lobby = lobbies.get(m.code);
        if (!lobby) {
          ws.send(JSON.stringify({ type: "error", id: m.id, code: "lobby_not_found",
                                   message: "no such lobby" }));
          return;
        }
        lobby.add(id);
        ws.send(JSON.stringify({ type: "lobby", id: m.id, lobby: { code: m.code } }));
        break;
      case "signal": {
        const target = lobby && lobby.has(m.to) ? peers.get(m.to) : undefined;
        if (target) target.send(JSON.stringify({ type: "signal", from: id, payload: m.payload }));
        break;
      }
      case "ping":
        ws.send(JSON.stringify({ type: "pong", id: m.id, t: m.t }));
        break;
    }
  });
  ws.on("close", () => {
    peers.delete(id);
    if (lobby) lobby.delete(id);
  });
});
