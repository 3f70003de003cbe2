// A computer player, ported from examples/squares/bots.py: control bits from what it sees.

import { DOWN, FIRE, LEFT, RIGHT, UP } from "./game.js";

const SPRAY_PER_SECOND = 0.8;
const ALIGN = 10;

function towards(x, y, tx, ty) {
  let bits = 0;
  if (tx > x + 4) bits |= RIGHT; else if (tx < x - 4) bits |= LEFT;
  if (ty > y + 4) bits |= DOWN; else if (ty < y - 4) bits |= UP;
  return bits;
}

export class Bot {
  constructor(rng) { Object.assign(this, { rng, wander: 0, wanderLeft: 0, lastPos: [0, 0], stuckFor: 0, chaseGems: true, planLeft: 0 }); }

  controls(w, dt) {
    const me = w.players.get(w.me);
    if (!me || !me.alive) return 0;
    const moved = Math.abs(me.x - this.lastPos[0]) + Math.abs(me.y - this.lastPos[1]);
    this.lastPos = [me.x, me.y];
    this.stuckFor = moved < 0.5 ? this.stuckFor + dt : 0;
    if (this.wanderLeft > 0 || this.stuckFor > 0.4) {
      if (this.wanderLeft <= 0) {
        this.wander = this.rng.choice([UP, DOWN, LEFT, RIGHT, UP | LEFT, DOWN | RIGHT]);
        this.wanderLeft = this.rng.uniform(0.3, 0.8);
        this.stuckFor = 0;
      }
      this.wanderLeft -= dt;
      return this.wander;
    }
    this.planLeft -= dt;
    if (this.planLeft <= 0) { this.chaseGems = this.rng.random() < 0.6; this.planLeft = this.rng.uniform(1, 2.5); }
    let bits = this.hunt(w, me);
    if (this.rng.random() < dt * SPRAY_PER_SECOND) bits |= FIRE;
    return bits;
  }

  hunt(w, me) {
    const dist = (p) => Math.abs(p.x - me.x) + Math.abs(p.y - me.y);
    const nearest = (xs) => xs.reduce((best, p) => (best === null || dist(p) < dist(best) ? p : best), null);
    const enemy = nearest([...w.players.values()].filter((p) => p.id !== me.id && p.alive && p.shield <= 0));
    const gem = nearest([...w.pickups.values()]);
    if (enemy) {
      const dx = enemy.x - me.x, dy = enemy.y - me.y;
      if (Math.abs(dy) < ALIGN && Math.abs(dx) < 420) return (dx > 0 ? RIGHT : LEFT) | FIRE;
      if (Math.abs(dx) < ALIGN && Math.abs(dy) < 420) return (dy > 0 ? DOWN : UP) | FIRE;
    }
    if (gem && (!enemy || this.chaseGems)) return towards(me.x, me.y, gem.x, gem.y);
    if (enemy) {
      const dx = enemy.x - me.x, dy = enemy.y - me.y;
      return Math.abs(dx) < Math.abs(dy) ? (dx > 0 ? RIGHT : LEFT) : (dy > 0 ? DOWN : UP);
    }
    return 0;
  }
}
