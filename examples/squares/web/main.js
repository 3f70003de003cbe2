// Squares in a browser: the same match as `netplay-demo` players and bots (examples/squares).
// The glue of examples/squares/match.py: per frame, network events are applied to the world,
// remote players come from interpolated snapshots, local controls (keyboard or bot) step the
// world, the step's events go out reliably and our snapshot goes to everyone.
//
// URL parameters: name=NAME, join=CODE | host=1 (default: quick match), bot=1 (a computer
// plays for you), seed=N, start_at=N (as host: start when N members are in), lobby=ws://...
// The page's state is window.squares (what tests read).

import { Mesh, f64 } from "/play/netplay/netplay.js";
import * as game from "./game.js";
import { Bot } from "./bot.js";

const GAME = "squares", GAME_VERSION = "1", FPS = 60;
const params = new URLSearchParams(location.search);
const seed = params.has("seed") ? Number(params.get("seed")) : undefined;
const rng = game.makeRng(seed);
const view = {
  status: "connecting", error: null, code: null, me: null, frames: 0, world: null,
  snapshots: {}, events: {}, eventKinds: {}, notices: [], bot: params.has("bot"),
};
window.squares = view;

const canvas = document.getElementById("arena");
const ctx = canvas.getContext("2d");
const keys = new Set();
const KEYS = { ArrowUp: game.UP, KeyW: game.UP, ArrowDown: game.DOWN, KeyS: game.DOWN,
  ArrowLeft: game.LEFT, KeyA: game.LEFT, ArrowRight: game.RIGHT, KeyD: game.RIGHT, Space: game.FIRE };
addEventListener("keydown", (e) => { if (KEYS[e.code]) { keys.add(e.code); e.preventDefault(); } });
addEventListener("keyup", (e) => keys.delete(e.code));
const keyboard = () => [...keys].reduce((bits, k) => bits | KEYS[k], 0);

const until = (check, what) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  const timer = setInterval(() => {
    if (check()) { clearInterval(timer); resolve(); }
    else if (performance.now() - t0 > 3600e3) { clearInterval(timer); reject(new Error(`timed out ${what}`)); }
  }, 50);
});

async function main() {
  const lobbyUrl = params.get("lobby") || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const name = (params.get("name") || `web-${Math.floor(rng.random() * 1000)}`).slice(0, 16);
  const mesh = new Mesh({ lobbyUrl, name, interpolate: game.lerpSnapshot });
  view.mesh = mesh;
  const queue = [];
  for (const type of ["peerJoined", "peerLeft", "hostChanged", "message"]) {
    mesh.on(type, (detail) => queue.push({ type, ...detail }));
  }
  mesh.on("lobby", (lobby) => queue.push({ type: "lobby", lobby }));
  mesh.on("state", ({ peer }) => { view.snapshots[peer] = (view.snapshots[peer] ?? 0) + 1; });
  await mesh.open();
  view.me = mesh.peerId;
  view.status = "finding a lobby";
  let lobby;
  if (params.get("join")) lobby = await mesh.join(params.get("join").trim().toUpperCase());
  else if (params.has("host")) lobby = await mesh.host({ game: GAME, gameVersion: GAME_VERSION, metadata: { started: false } });
  else lobby = await mesh.quickMatch({ game: GAME, gameVersion: GAME_VERSION });
  view.code = lobby.code;
  history.replaceState(null, "", `?join=${lobby.code}${view.bot ? "&bot=1" : ""}`);
  const startAt = Number(params.get("start_at") || 1);
  if (mesh.isHost && !mesh.lobby.metadata.started) {
    view.status = "waiting for players";
    await until(() => mesh.lobby && mesh.lobby.members.length >= startAt, "waiting for players");
    await mesh.setMetadata({ ...mesh.lobby.metadata, started: true });
  } else {
    view.status = "waiting for the host to start";
    await until(() => mesh.lobby && (mesh.lobby.metadata.started || mesh.isHost), "waiting for the host");
    if (!mesh.lobby.metadata.started) await mesh.setMetadata({ ...mesh.lobby.metadata, started: true });
  }
  play(mesh, queue);
}

function play(mesh, queue) {
  view.status = "playing";
  const world = game.newWorld(mesh.peerId, mesh.lobby.host, rng);
  view.world = world;
  const slots = new Map();
  const syncMembers = () => { for (const m of mesh.lobby?.members ?? []) slots.set(m.id, m.seq); };
  const slot = (id) => slots.get(id) ?? slots.size;
  const nameOf = (id) => mesh.lobby?.members.find((m) => m.id === id)?.name ?? id;
  const greeted = new Set();
  const send = (outgoing) => { for (const o of outgoing) mesh.sendEvent(o.event, o.to ?? null); };
  const notice = (text) => { game.say(world, text); view.notices.push(text); view.notices.splice(0, view.notices.length - 20); };
  const greet = (id) => { if (!greeted.has(id)) { greeted.add(id); send([game.chat("hi from a browser!", id)]); } };
  syncMembers();
  game.addPlayer(world, mesh.peerId, nameOf(mesh.peerId), slot(mesh.peerId));
  for (const id of mesh.peers) { game.addPlayer(world, id, nameOf(id), slot(id)); greet(id); }
  const bot = view.bot ? new Bot(rng) : null;
  const dt = 1 / FPS;
  setInterval(() => {
    view.frames++;
    for (const ev of queue.splice(0)) {
      if (ev.type === "peerJoined") {
        syncMembers();
        const fresh = !world.players.has(ev.peer);
        game.addPlayer(world, ev.peer, ev.name, slot(ev.peer));
        if (fresh) notice(`${ev.name} joined`);
        send(game.welcome(world, ev.peer));
        greet(ev.peer);
      } else if (ev.type === "peerLeft") {
        if (!world.players.has(ev.peer)) continue;
        notice(`${world.players.get(ev.peer).name} left (${ev.reason})`);
        game.removePlayer(world, ev.peer);
      } else if (ev.type === "hostChanged") {
        send(game.setHost(world, ev.host));
        notice(ev.isMe ? "you are the host now" : `${nameOf(ev.host)} is the host now`);
      } else if (ev.type === "lobby" && ev.lobby) {
        syncMembers();
        for (const m of ev.lobby.members) if (world.players.has(m.id)) world.players.get(m.id).name = m.name;
      } else if (ev.type === "message") {
        if (!world.players.has(ev.peer)) continue;
        view.events[ev.peer] = (view.events[ev.peer] ?? 0) + 1;
        const kind = String(ev.body?.t);
        view.eventKinds[kind] = (view.eventKinds[kind] ?? 0) + 1;
        send(game.applyEvent(world, ev.peer, ev.body));
      }
    }
    const shown = mesh.interpolated();
    for (const [id, state] of Object.entries(shown)) game.applyRemoteState(world, id, state);
    const controls = bot ? bot.controls(world, dt) : keyboard();
    send(game.step(world, { [world.me]: controls }, dt));
    mesh.sendState(game.localState(world, f64));
    draw(world);
  }, 1000 / FPS);
}

function rgb([r, g, b], a = 1) { return `rgba(${r},${g},${b},${a})`; }

function draw(w) {
  ctx.fillStyle = "#1b1e26"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#232733"; ctx.fillRect(0, 0, game.ARENA_W, game.ARENA_H);
  ctx.fillStyle = "#4a5163";
  for (const [x, y, ww, h] of game.WALLS) ctx.fillRect(x, y, ww, h);
  ctx.fillStyle = "#ffd75e";
  for (const g of w.pickups.values()) {
    ctx.beginPath(); ctx.moveTo(g.x, g.y - 10); ctx.lineTo(g.x + 10, g.y); ctx.lineTo(g.x, g.y + 10); ctx.lineTo(g.x - 10, g.y); ctx.fill();
  }
  for (const [t, x, y, color] of w.splats) {
    ctx.fillStyle = rgb(color, 1 - (w.time - t) / game.SPLAT_TIME);
    ctx.beginPath(); ctx.arc(x, y, 24, 0, 2 * Math.PI); ctx.fill();
  }
  for (const b of w.bullets.values()) {
    ctx.fillStyle = rgb(w.players.get(b.owner)?.color ?? [255, 255, 255]);
    ctx.beginPath(); ctx.arc(b.x, b.y, game.BULLET_RADIUS, 0, 2 * Math.PI); ctx.fill();
  }
  const half = game.PLAYER_SIZE / 2;
  ctx.font = "12px sans-serif"; ctx.textAlign = "center";
  for (const p of w.players.values()) {
    if (!p.alive) continue;
    ctx.fillStyle = rgb(p.color); ctx.fillRect(p.x - half, p.y - half, 2 * half, 2 * half);
    if (p.shield > 0) { ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 2; ctx.strokeRect(p.x - half - 3, p.y - half - 3, 2 * half + 6, 2 * half + 6); }
    ctx.fillStyle = "#11131a"; ctx.fillRect(p.x + p.aimX * 8 - 3, p.y + p.aimY * 8 - 3, 6, 6);
    ctx.fillStyle = "#e6e6e6"; ctx.fillText(p.id === w.me ? `${p.name} (you)` : p.name, p.x, p.y - half - 6);
  }
  ctx.textAlign = "left"; ctx.fillStyle = "#e6e6e6"; ctx.font = "16px sans-serif";
  const sx = game.ARENA_W + 16;
  ctx.fillText(`lobby ${view.code}`, sx, 30);
  ctx.font = "13px sans-serif";
  ctx.fillText(`host: ${w.players.get(w.hostId)?.name ?? w.hostId}`, sx, 52);
  let y = 84;
  for (const p of [...w.players.values()].sort((a, b) => b.score - a.score)) {
    ctx.fillStyle = rgb(p.color); ctx.fillRect(sx, y - 10, 10, 10);
    ctx.fillStyle = "#e6e6e6"; ctx.fillText(`${p.name}  ${p.score}`, sx + 16, y);
    y += 20;
  }
  y += 10;
  ctx.fillStyle = "#9aa3b5";
  for (const [, text] of w.messages) { ctx.fillText(text.slice(0, 26), sx, y); y += 18; }
}

main().catch((err) => {
  view.status = "failed";
  view.error = `${err.name}: ${err.message}`;
  document.getElementById("status").textContent = `could not join: ${view.error}`;
  console.error(err);
});
