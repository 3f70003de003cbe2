"""Per-link pacing of reliable data: a token bucket whose rate follows queueing delay. No I/O.

The model is delay-based (in the family of LEDBAT, RFC 6817, and TCP Vegas): the rate grows
while the round trip stays near the smallest one seen, and shrinks once it grows by more than
``target`` (data is queueing somewhere: in the network, in a socket buffer, or in a receiver
that cannot keep up). Random loss alone does not cut the rate, so a lossy Wi-Fi link is not
mistaken for a congested one. Rate changes at most once per round trip:

- queueing delay (the smallest RTT sample of the last round trip minus the path's minimum)
  above ``target``: ``rate *= 0.8``;
- else, if the sender was held back by the bucket in that round trip: ``rate *= 1.25``.

State datagrams are not paced (they are the game's heartbeat and come at most once a tick),
but their bytes count against the bucket, so reliable data takes what is left. A burst is at
most ``max(BURST_BYTES, rate * BURST_TIME)``: nothing arrives at a receiver's socket in a
clump that could overflow its buffer.
"""

from __future__ import annotations

__all__ = ["Pacer"]

BURST_BYTES = 8 * 1100
BURST_TIME = 0.004
MIN_WINDOW = 0.02
"""Seconds: the shortest interval between two rate changes (for loopback's tiny RTTs)."""
MIN_RTT_LIFETIME = 10.0
"""Seconds a path's minimum RTT is trusted before it is measured afresh."""


class Pacer:
    """A token bucket for one link (bytes per second), steered by RTT samples."""

    def __init__(self, *, initial_rate: float = 1_000_000.0, min_rate: float = 32_000.0,
                 max_rate: float = 100_000_000.0, target: float = 0.01) -> None:
        self.rate = initial_rate
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.target = target
        self.tokens = self._burst()
        self._updated: float | None = None
        self._limited = False
        self._window_start: float | None = None
        self._window_min = float("inf")
        self._min_rtt = float("inf")
        self._min_rtt_next = float("inf")
        self._min_rtt_since = 0.0
        self.decreases = 0

    def _burst(self) -> float:
        return max(BURST_BYTES, self.rate * BURST_TIME)

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self.tokens = min(self._burst(), self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    def available(self, now: float) -> float:
        """Bytes that may be sent now (may be negative after a state datagram)."""
        self._refill(now)
        return self.tokens

    def spend(self, size: int) -> None:
        """Account for ``size`` bytes sent."""
        self.tokens -= size

    def wait(self, size: int, now: float) -> float:
        """Seconds until ``size`` bytes may go (0.0: now); marks the sender rate-limited."""
        self._refill(now)
        if self.tokens >= min(size, self._burst()):
            return 0.0
        self._limited = True
        return (min(size, self._burst()) - self.tokens) / self.rate

    def mark_limited(self) -> None:
        """The sender had data waiting that the bucket held back."""
        self._limited = True

    def on_rtt(self, rtt: float, now: float) -> None:
        """Take one RTT sample (seconds) and adapt the rate once per round trip."""
        if now - self._min_rtt_since > MIN_RTT_LIFETIME:  # refresh the path's minimum
            self._min_rtt = min(self._min_rtt_next, rtt)
            self._min_rtt_next = float("inf")
            self._min_rtt_since = now
        self._min_rtt = min(self._min_rtt, rtt)
        self._min_rtt_next = min(self._min_rtt_next, rtt)
        self._window_min = min(self._window_min, rtt)
        if self._window_start is None:
            self._window_start = now
            return
        if now - self._window_start < max(self._min_rtt, MIN_WINDOW):
            return
        queueing = self._window_min - self._min_rtt
        if queueing > self.target:
            self.rate = max(self.min_rate, self.rate * 0.8)
            self.decreases += 1
        elif self._limited:
            self.rate = min(self.max_rate, self.rate * 1.25)
        self._limited = False
        self._window_start = now
        self._window_min = float("inf")
