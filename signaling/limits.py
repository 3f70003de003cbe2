"""Per-address limits: connections, lobbies hosted and failed joins, counted per client IP.

The WebSocket app (``signaling.app``) asks :class:`AddressLimits` before it hands a request to the
backend, so one address cannot take every connection slot, every lobby or unlimited guesses at
lobby passwords and codes, whatever the backend. Plain Python, no I/O; the clock is injectable.

State is kept per address only while it matters: an address with no connection, no lobby and a
full failed-join allowance is forgotten (:meth:`AddressLimits.prune`), so memory stays bounded by
the number of connected and recently misbehaving addresses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["AddressLimits", "TokenBucket"]


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; :meth:`take` spends one."""

    __slots__ = ("capacity", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> float:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self) -> bool:
        """Spend a token; False (nothing spent) when none is left."""
        if self._refill() >= 1:
            self.tokens -= 1
            return True
        return False

    def available(self) -> bool:
        """True when :meth:`take` would succeed now (spends nothing)."""
        return self._refill() >= 1

    def full(self) -> bool:
        """True when the bucket has refilled completely."""
        return self._refill() >= self.capacity

    def wait(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1 - self._refill()) / self.rate)


@dataclass
class _Address:
    connections: int = 0
    lobbies: int = 0
    failed_joins: TokenBucket | None = field(default=None)


class AddressLimits:
    """Counts per client address (``scope["client"][0]``).

    - ``max_connections``: open WebSocket connections at once;
    - ``max_lobbies``: lobbies created by the address's connections that they still host
      (a dropped host's lobby keeps counting for its resume grace);
    - ``failed_joins_per_minute``: joins refused for a wrong password or an unknown code, in a
      burst of that many, refilled at that rate; when spent, every join from the address is
      refused the same way until a token refills, whether the code exists or not.
    """

    def __init__(self, *, max_connections: int, max_lobbies: int,
                 failed_joins_per_minute: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = max_connections
        self.max_lobbies = max_lobbies
        self.failed_joins_per_minute = failed_joins_per_minute
        self.clock = clock
        self._addresses: dict[str, _Address] = {}

    def _get(self, address: str) -> _Address:
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address()
        return entry

    def __len__(self) -> int:
        """Addresses currently remembered."""
        return len(self._addresses)

    # --- connections ---

    def connect(self, address: str) -> bool:
        """Count a new connection; False (nothing counted) when the address is at its limit."""
        entry = self._get(address)
        if entry.connections >= self.max_connections:
            return False
        entry.connections += 1
        return True

    def disconnect(self, address: str) -> None:
        """A connection counted by :meth:`connect` closed."""
        entry = self._addresses.get(address)
        if entry is not None and entry.connections > 0:
            entry.connections -= 1
            self._forget_if_idle(address, entry)

    def connections(self, address: str) -> int:
        """Open connections from ``address``."""
        entry = self._addresses.get(address)
        return entry.connections if entry else 0

    # --- lobbies ---

    def may_host(self, address: str) -> bool:
        """True when the address may create another lobby."""
        entry = self._addresses.get(address)
        return entry is None or entry.lobbies < self.max_lobbies

    def hosting(self, address: str) -> None:
        """A connection from ``address`` created (or resumed hosting) a lobby."""
        self._get(address).lobbies += 1

    def stopped_hosting(self, address: str) -> None:
        """A lobby counted by :meth:`hosting` is no longer hosted from ``address``."""
        entry = self._addresses.get(address)
        if entry is not None and entry.lobbies > 0:
            entry.lobbies -= 1
            self._forget_if_idle(address, entry)

    # --- failed joins ---

    def may_join(self, address: str) -> float:
        """0 when the address may try a join now, else the seconds until it may."""
        entry = self._addresses.get(address)
        if entry is None or entry.failed_joins is None:
            return 0.0
        bucket = entry.failed_joins
        return 0.0 if bucket.available() else bucket.wait()

    def join_failed(self, address: str) -> None:
        """A join from ``address`` was refused for a wrong password or an unknown code."""
        entry = self._get(address)
        if entry.failed_joins is None:
            per_minute = self.failed_joins_per_minute
            entry.failed_joins = TokenBucket(per_minute / 60, per_minute, self.clock)
        entry.failed_joins.take()

    # --- memory ---

    def _forget_if_idle(self, address: str, entry: _Address) -> None:
        if (entry.connections == 0 and entry.lobbies == 0
                and (entry.failed_joins is None or entry.failed_joins.full())):
            del self._addresses[address]

    def prune(self) -> None:
        """Forget addresses with nothing counted (run now and then)."""
        for address, entry in list(self._addresses.items()):
            self._forget_if_idle(address, entry)
