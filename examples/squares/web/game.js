// Game rules of Squares, ported from examples/squares/game.py (same constants, events and
// authority: the victim decides a hit, the host owns the gems). Differences from Python are
// listed in docs/browser.md ("The demo in a browser"): only the random number generator
// (spawn spots and bot choices differ from Python's for the same seed).

export const ARENA_W = 760, ARENA_H = 600;
export const PLAYER_SIZE = 26, PLAYER_SPEED = 230, BULLET_SPEED = 560, BULLET_TTL = 1.1;
export const BULLET_RADIUS = 5, FIRE_COOLDOWN = 0.35, RESPAWN_TIME = 1.5, SPAWN_SHIELD = 1.2;
export const PICKUP_RADIUS = 10, PICKUP_EVERY = 2.5, MAX_PICKUPS = 4, CLAIM_RETRY = 0.5;
export const MESSAGE_TIME = 5, EARLY_KEPT = 8, SPLAT_TIME = 0.6;
export const UP = 1, DOWN = 2, LEFT = 4, RIGHT = 8, FIRE = 16;

export const PALETTE = [
  [237, 85, 101], [72, 207, 173], [93, 156, 236], [255, 206, 84],
  [172, 146, 236], [252, 110, 81], [160, 212, 104], [236, 135, 192],
];

export const WALLS = [
  [170, 130, 120, 24], [470, 130, 120, 24], [170, 446, 120, 24], [470, 446, 120, 24],
  [362, 250, 36, 100], [80, 280, 24, 40], [656, 280, 24, 40],
];

/** A seeded random source (mulberry32): uniform(a, b), choice(list), random(). */
export function makeRng(seed = Math.floor(Math.random() * 2 ** 32)) {
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { random, uniform: (lo, hi) => lo + (hi - lo) * random(), choice: (xs) => xs[Math.floor(random() * xs.length)] };
}

const round = (x, digits) => { const f = 10 ** digits; return Math.round(x * f) / f; };

function inWall([x, y, w, h], px, py, margin) {
  return x - margin <= px && px <= x + w + margin && y - margin <= py && py <= y + h + margin;
}

export function blocked(x, y, half) {
  if (x < half || y < half || x > ARENA_W - half || y > ARENA_H - half) return true;
  return WALLS.some((wall) => inWall(wall, x, y, half));
}

export function freeSpot(rng, margin = PLAYER_SIZE) {
  for (let i = 0; i < 200; i++) {
    const x = rng.uniform(margin, ARENA_W - margin), y = rng.uniform(margin, ARENA_H - margin);
    if (!blocked(x, y, margin)) return [x, y];
  }
  return [ARENA_W / 2, 40];
}

export function newWorld(me, hostId, rng = makeRng()) {
  return { me, hostId, rng, players: new Map(), bullets: new Map(), pickups: new Map(),
    messages: [], splats: [], time: 0, nextPickupIn: 1, serial: 0, early: new Map(), gemsSpawned: {} };
}

export const isHost = (w) => w.hostId === w.me;
const newId = (w) => `${w.me}:${++w.serial}`;
const nameOf = (w, id) => w.players.get(id)?.name ?? id;
export function say(w, text) { w.messages.push([w.time, text]); }

export function addPlayer(w, id, name, slot) {
  let p = w.players.get(id);
  if (!p) {
    p = { id, name, color: PALETTE[slot % PALETTE.length], x: ARENA_W / 2, y: ARENA_H / 2, aimX: 1, aimY: 0,
      score: 0, alive: true, respawnIn: 0, shield: 0, cooldown: 0, tags: 0 };
    [p.x, p.y] = freeSpot(w.rng);
    if (id === w.me) p.shield = SPAWN_SHIELD;
    w.players.set(id, p);
  } else p.name = name;
  return p;
}

export function removePlayer(w, id) { w.players.delete(id); w.early.delete(id); }

const pickupsEvent = (w) => ({ t: "pickups", items: [...w.pickups.values()].map((p) => [p.id, round(p.x, 1), round(p.y, 1)]) });

export function setHost(w, hostId) {
  if (hostId === w.hostId) return [];
  w.hostId = hostId;
  const early = w.early.get(hostId) ?? [];
  w.early.clear();
  if (isHost(w)) { w.nextPickupIn = Math.min(w.nextPickupIn, PICKUP_EVERY); return [{ event: pickupsEvent(w), to: null }]; }
  for (const event of early) applyEvent(w, hostId, event);
  return [];
}

/** The snapshot this peer broadcasts. f64 marks floats so Python receives floats. */
export function localState(w, f64 = (x) => x) {
  const me = w.players.get(w.me);
  if (!me) return {};
  return { x: f64(round(me.x, 1)), y: f64(round(me.y, 1)), ax: f64(round(me.aimX, 2)), ay: f64(round(me.aimY, 2)),
    s: me.score, al: me.alive ? 1 : 0, sh: me.shield > 0 ? 1 : 0 };
}

/** Blend two snapshots of a player for rendering (the Mesh's interpolate hook). */
export function lerpSnapshot(a, b, t) {
  if (!(a && b && typeof a === "object" && typeof b === "object")) return b;
  const out = { ...(t < 0.5 ? a : b) };
  if (a.al === b.al) {
    for (const k of ["x", "y", "ax", "ay"]) {
      if (typeof a[k] === "number" && typeof b[k] === "number") out[k] = a[k] + (b[k] - a[k]) * t;
    }
  }
  return out;
}

export function applyRemoteState(w, id, s) {
  const p = w.players.get(id);
  if (!p || id === w.me || !s || typeof s.x !== "number" || typeof s.y !== "number") return;
  p.x = s.x; p.y = s.y;
  if (typeof s.ax === "number") p.aimX = s.ax;
  if (typeof s.ay === "number") p.aimY = s.ay;
  if (typeof s.s === "number") p.score = Math.round(s.s);
  p.alive = Math.round(s.al ?? 1) !== 0;
  p.shield = Math.round(s.sh ?? 0) ? 1 : 0;
}

function direction(c) {
  const dx = (c & RIGHT ? 1 : 0) - (c & LEFT ? 1 : 0), dy = (c & DOWN ? 1 : 0) - (c & UP ? 1 : 0);
  return dx && dy ? [dx / Math.SQRT2, dy / Math.SQRT2] : [dx, dy];
}

function move(p, c, dt) {
  const [dx, dy] = direction(c);
  if (dx || dy) { p.aimX = dx; p.aimY = dy; }
  const half = PLAYER_SIZE / 2;
  const nx = p.x + dx * PLAYER_SPEED * dt;
  if (!blocked(nx, p.y, half)) p.x = nx;
  const ny = p.y + dy * PLAYER_SPEED * dt;
  if (!blocked(p.x, ny, half)) p.y = ny;
}

function fire(w, p) {
  const id = newId(w), off = PLAYER_SIZE / 2 + BULLET_RADIUS + 1;
  const b = { id, owner: p.id, x: p.x + p.aimX * off, y: p.y + p.aimY * off, vx: p.aimX * BULLET_SPEED, vy: p.aimY * BULLET_SPEED, ttl: BULLET_TTL };
  w.bullets.set(id, b);
  p.cooldown = FIRE_COOLDOWN;
  return { event: { t: "shot", id, x: round(b.x, 1), y: round(b.y, 1), vx: round(b.vx, 1), vy: round(b.vy, 1) }, to: null };
}

function simulatePlayer(w, p, c, dt) {
  p.cooldown = Math.max(0, p.cooldown - dt);
  p.shield = Math.max(0, p.shield - dt);
  if (!p.alive) {
    p.respawnIn -= dt;
    if (p.respawnIn <= 0) { p.alive = true; p.shield = SPAWN_SHIELD; }
    return [];
  }
  move(p, c, dt);
  return c & FIRE && p.cooldown <= 0 ? [fire(w, p)] : [];
}

function tagged(w, victim, shooterId) {
  w.splats.push([w.time, victim.x, victim.y, victim.color]);
  victim.alive = false;
  victim.respawnIn = RESPAWN_TIME;
  victim.tags++;
  if (victim.id === w.me) [victim.x, victim.y] = freeSpot(w.rng);
  const shooter = w.players.get(shooterId);
  if (shooter && shooter.id === w.me) shooter.score++;
  say(w, `${nameOf(w, shooterId)} tagged ${victim.name}`);
}

function flyBullets(w, simulated, dt) {
  const out = [];
  const targets = simulated.map((id) => w.players.get(id)).filter(Boolean);
  const reach = PLAYER_SIZE / 2 + BULLET_RADIUS;
  for (const b of [...w.bullets.values()]) {
    b.x += b.vx * dt; b.y += b.vy * dt; b.ttl -= dt;
    if (b.ttl <= 0 || blocked(b.x, b.y, BULLET_RADIUS)) { w.bullets.delete(b.id); continue; }
    for (const v of targets) {
      if (v.id !== b.owner && v.alive && v.shield <= 0 && Math.abs(v.x - b.x) <= reach && Math.abs(v.y - b.y) <= reach) {
        w.bullets.delete(b.id);
        tagged(w, v, b.owner);
        out.push({ event: { t: "hit", by: b.owner, bullet: b.id, victim: v.id }, to: null });
        break;
      }
    }
  }
  return out;
}

function taken(w, taker) { if (taker === w.me && w.players.get(w.me)) w.players.get(w.me).score++; }

function grant(w, pickupId, taker) {
  if (!w.pickups.delete(pickupId)) return [];
  taken(w, taker);
  return [{ event: { t: "taken", id: pickupId, by: taker }, to: null }];
}

function touchPickups(w, p) {
  const out = [];
  if (!p.alive) return out;
  const reach = PLAYER_SIZE / 2 + PICKUP_RADIUS;
  for (const g of [...w.pickups.values()]) {
    if (Math.abs(p.x - g.x) > reach || Math.abs(p.y - g.y) > reach) continue;
    if (isHost(w)) out.push(...grant(w, g.id, p.id));
    else if (w.time - g.claimedAt >= CLAIM_RETRY) { g.claimedAt = w.time; out.push({ event: { t: "claim", id: g.id }, to: w.hostId }); }
  }
  return out;
}

function spawnPickups(w, dt) {
  w.nextPickupIn -= dt;
  if (w.nextPickupIn > 0) return [];
  w.nextPickupIn = PICKUP_EVERY;
  if (w.pickups.size >= MAX_PICKUPS) return [];
  const [x, y] = freeSpot(w.rng, PICKUP_RADIUS * 3);
  const g = { id: newId(w), x, y, claimedAt: -1e9 };
  w.pickups.set(g.id, g);
  w.gemsSpawned[w.me] = (w.gemsSpawned[w.me] ?? 0) + 1;
  return [{ event: { t: "pickup", id: g.id, x: round(x, 1), y: round(y, 1) }, to: null }];
}

/** Advance the world by dt for {peerId: controls}; returns the events to send. */
export function step(w, inputs, dt) {
  w.time += dt;
  const out = [];
  const ids = Object.keys(inputs);
  for (const id of ids) { const p = w.players.get(id); if (p) out.push(...simulatePlayer(w, p, inputs[id], dt)); }
  out.push(...flyBullets(w, ids, dt));
  for (const id of ids) { const p = w.players.get(id); if (p) out.push(...touchPickups(w, p)); }
  if (isHost(w)) out.push(...spawnPickups(w, dt));
  w.messages = w.messages.filter(([t]) => w.time - t < MESSAGE_TIME).slice(-6);
  w.splats = w.splats.filter((s) => w.time - s[0] < SPLAT_TIME);
  return out;
}

export function welcome(w, peerId) { return isHost(w) ? [{ event: pickupsEvent(w), to: peerId }] : []; }
export function chat(text, to = null) { return { event: { t: "chat", text: text.slice(0, 40) }, to }; }

/** Apply a reliable event from `sender`; returns replies. Malformed events are ignored. */
export function applyEvent(w, sender, e) {
  try { return apply(w, sender, e); } catch (err) { console.warn("ignoring malformed event", sender, e, err); return []; }
}

const num = (v) => { if (typeof v !== "number") throw new TypeError("not a number"); return v; };

function apply(w, sender, e) {
  const kind = e.t;
  if (kind === "shot") {
    const id = String(e.id);
    w.bullets.set(id, { id, owner: sender, x: num(e.x), y: num(e.y), vx: num(e.vx), vy: num(e.vy), ttl: BULLET_TTL });
  } else if (kind === "hit") {
    w.bullets.delete(String(e.bullet));
    const v = w.players.get(sender);
    if (v) tagged(w, v, String(e.by));
  } else if ((kind === "pickup" || kind === "pickups") && sender !== w.hostId) {
    if (sender !== w.me && w.players.has(sender)) {
      const kept = w.early.get(sender) ?? [];
      kept.push(e);
      w.early.set(sender, kept.slice(-EARLY_KEPT));
    }
  } else if (kind === "pickup") {
    const id = String(e.id);
    w.pickups.set(id, { id, x: num(e.x), y: num(e.y), claimedAt: -1e9 });
    w.gemsSpawned[sender] = (w.gemsSpawned[sender] ?? 0) + 1;
  } else if (kind === "pickups") {
    w.pickups = new Map(e.items.map(([i, x, y]) => [String(i), { id: String(i), x: num(x), y: num(y), claimedAt: -1e9 }]));
  } else if (kind === "claim") {
    if (isHost(w)) return grant(w, String(e.id), sender);
  } else if (kind === "chat") {
    say(w, `${nameOf(w, sender)}: ${String(e.text).slice(0, 40)}`);
  } else if (kind === "taken") {
    w.pickups.delete(String(e.id));
    taken(w, String(e.by));
  }
  return [];
}
