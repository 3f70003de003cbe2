// Per-link pacing of reliable data (docs/wire.md section 15), a port of netplay/congestion.py:
// a token bucket whose rate follows queueing delay (delay-based, LEDBAT/Vegas family). The rate
// grows while the round trip stays near the smallest seen and shrinks once queueing adds more
// than `target`; random loss alone does not cut it. State datagrams are not held by it, but
// their bytes count, so reliable data takes what is left.

const BURST_BYTES = 8 * 1100;
const BURST_TIME = 0.004;
const MIN_WINDOW = 0.02;
const MIN_RTT_LIFETIME = 10;

export class Pacer {
  constructor({ initialRate = 1e6, minRate = 32e3, maxRate = 1e8, target = 0.01 } = {}) {
    this.rate = initialRate; this.minRate = minRate; this.maxRate = maxRate; this.target = target;
    this.tokens = this.burst();
    this.updated = null; this.limited = false; this.windowStart = null; this.windowMin = Infinity;
    this.minRtt = Infinity; this.minRttNext = Infinity; this.minRttSince = 0; this.decreases = 0;
  }

  burst() { return Math.max(BURST_BYTES, this.rate * BURST_TIME); }

  refill(now) {
    if (this.updated !== null && now > this.updated) {
      this.tokens = Math.min(this.burst(), this.tokens + (now - this.updated) * this.rate);
    }
    this.updated = now;
  }

  /** Bytes that may be sent now (negative after a state datagram). */
  available(now) { this.refill(now); return this.tokens; }

  /** Account for `size` bytes sent. */
  spend(size) { this.tokens -= size; }

  /** Seconds until `size` bytes may go (0: now); marks the sender rate-limited. */
  wait(size, now) {
    this.refill(now);
    const need = Math.min(size, this.burst());
    if (this.tokens >= need) return 0;
    this.limited = true;
    return (need - this.tokens) / this.rate;
  }

  /** The sender had data waiting that the bucket (or the channel's buffer) held back. */
  markLimited() { this.limited = true; }

  /** One RTT sample (seconds): adapt the rate at most once per round trip. */
  onRtt(rtt, now) {
    if (now - this.minRttSince > MIN_RTT_LIFETIME) {
      this.minRtt = Math.min(this.minRttNext, rtt);
      this.minRttNext = Infinity;
      this.minRttSince = now;
    }
    this.minRtt = Math.min(this.minRtt, rtt);
    this.minRttNext = Math.min(this.minRttNext, rtt);
    this.windowMin = Math.min(this.windowMin, rtt);
    if (this.windowStart === null) { this.windowStart = now; return; }
    if (now - this.windowStart < Math.max(this.minRtt, MIN_WINDOW)) return;
    if (this.windowMin - this.minRtt > this.target) {
      this.rate = Math.max(this.minRate, this.rate * 0.8);
      this.decreases++;
    } else if (this.limited) {
      this.rate = Math.min(this.maxRate, this.rate * 1.25);
    }
    this.limited = false;
    this.windowStart = now;
    this.windowMin = Infinity;
  }
}
