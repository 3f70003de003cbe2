"""Link conditioner: latency, jitter, loss, duplication, reordering, bandwidth cap, per direction.

This machine's kernel has no netem, and games want to be tried under bad networks anyway, so
netplay impairs traffic itself, at the packet level *below* SCTP and DTLS: the reliable channel
really retransmits and the unreliable one really loses.

It sits between DTLS and aioice on each ICE transport of the peer connection: outbound, where
``RTCDtlsTransport`` sends each datagram; inbound, where aioice hands over each non-STUN datagram
(STUN, so connectivity checks and consent, is not conditioned and ICE itself stays healthy).
Installing that tap reaches into aiortc/aioice internals, so it lives in :mod:`netplay._aiortc`
(:func:`~netplay._aiortc.tap_datagrams`, which names the private details); with an aiortc or
aioice that lacks them, :func:`attach` raises ``RuntimeError`` rather than leave the link
unimpaired.

Delays never block: due packets wait in a timer queue per transport and direction (one
``loop.call_later`` armed for the earliest packet). When the ICE transport closes (``pc.close()``)
its pending packets are discarded and the timer cancelled.

The decisions (drop? when to deliver? copy?) are made by :class:`LinkScheduler`, a pure class driven
by a seeded ``random.Random``, so the same seed gives the same impairment and it can be unit-tested
without a network. Configure it from code (:class:`ConditionerConfig`), from a preset
(``"good"``, ``"mobile"``, ``"awful"``), or from the ``NETPLAY_CONDITIONER`` environment variable
(:meth:`ConditionerConfig.from_env`), e.g. ``NETPLAY_CONDITIONER="latency=50,jitter=5,loss=5%"``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

__all__ = [
    "ConditionerConfig",
    "DirectionStats",
    "LinkConditioner",
    "LinkScheduler",
    "attach",
]

logger = logging.getLogger(__name__)

_PROBABILITIES = ("loss", "duplicate", "reorder")


@dataclass(frozen=True)
class ConditionerConfig:
    """How one direction of a link is impaired. All delays are in milliseconds.

    A packet is first lost with probability ``loss``; then it queues behind the bandwidth cap
    (dropped if the queue is full); then it is delayed by ``latency_ms`` plus a uniform jitter in
    ``[-jitter_ms, +jitter_ms]``. Jitter alone never reorders packets (each packet is delivered no
    earlier than the one before it); reordering comes only from ``reorder``.
    """

    latency_ms: float = 0.0
    """Base one-way delay added to every packet."""
    jitter_ms: float = 0.0
    """Half-width of the uniform random variation around ``latency_ms``; must not exceed it."""
    loss: float = 0.0
    """Probability (0..1) that a packet is dropped."""
    duplicate: float = 0.0
    """Probability (0..1) that a delivered packet is delivered twice."""
    reorder: float = 0.0
    """Probability (0..1) that a packet is held back by an extra delay so later ones overtake it."""
    reorder_ms: float = 30.0
    """Largest extra delay of a held-back packet (uniform between half of it and all of it)."""
    bandwidth_kbps: float | None = None
    """Bandwidth cap in kilobits per second (token bucket of one packet); ``None`` means no cap."""
    queue_bytes: int = 64_000
    """Bytes that may wait behind the bandwidth cap; a packet that does not fit is dropped."""
    seed: int | None = None
    """Seed of the random decisions; ``None`` takes the seed given to :func:`attach`, if any."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # A decent home connection to a nearby player.
        "good": {"latency_ms": 15, "jitter_ms": 2, "loss": 0.001},
        # A phone on 4G: more delay and jitter, some loss, a little reordering, 2 Mbit/s.
        "mobile": {"latency_ms": 60, "jitter_ms": 15, "loss": 0.02, "duplicate": 0.001,
                   "reorder": 0.01, "bandwidth_kbps": 2000},
        # Congested Wi-Fi across a continent: everything at once, 500 kbit/s.
        "awful": {"latency_ms": 150, "jitter_ms": 50, "loss": 0.10, "duplicate": 0.02,
                  "reorder": 0.05, "bandwidth_kbps": 500},
    }
    """Named configurations for :meth:`preset` (the numbers are the documentation)."""

    _KEYS: ClassVar[dict[str, str]] = {
        "latency": "latency_ms", "latency_ms": "latency_ms",
        "jitter": "jitter_ms", "jitter_ms": "jitter_ms",
        "loss": "loss",
        "dup": "duplicate", "duplicate": "duplicate",
        "reorder": "reorder", "reorder_ms": "reorder_ms",
        "kbps": "bandwidth_kbps", "bandwidth": "bandwidth_kbps", "bandwidth_kbps": "bandwidth_kbps",
        "queue": "queue_bytes", "queue_bytes": "queue_bytes",
        "seed": "seed",
    }

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "reorder_ms"):
            value = getattr(self, name)
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"conditioner {name} must be a finite number >= 0, got {value!r}")
        if self.jitter_ms > self.latency_ms:
            raise ValueError(
                f"conditioner jitter_ms ({self.jitter_ms}) must not exceed latency_ms "
                f"({self.latency_ms}): a packet cannot arrive before it was sent"
            )
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"conditioner {name} is a probability in 0..1, got {value!r}")
        if self.bandwidth_kbps is not None and not 0 < self.bandwidth_kbps < float("inf"):
            raise ValueError(
                f"conditioner bandwidth_kbps must be > 0 (or None for no cap), "
                f"got {self.bandwidth_kbps!r}"
            )
        if self.queue_bytes < 1:
            raise ValueError(f"conditioner queue_bytes must be >= 1, got {self.queue_bytes!r}")

    @classmethod
    def preset(cls, name: str) -> ConditionerConfig:
        """The named preset: ``"good"``, ``"mobile"`` or ``"awful"`` (see :attr:`PRESETS`)."""
        try:
            return cls(**cls.PRESETS[name])
        except KeyError:
            raise ValueError(
                f"unknown conditioner preset {name!r}; choose one of {', '.join(cls.PRESETS)}"
            ) from None

    @classmethod
    def parse(cls, text: str) -> ConditionerConfig:
        """Parse ``"latency=50,jitter=5,loss=0.05,dup=0.01,reorder=0.02,kbps=500,seed=1"``.

        The text may start with a preset name, which later keys override (``"mobile,loss=10%"``).
        Probabilities may be written as percentages. Raises ``ValueError`` naming the bad part.
        """
        values: dict[str, Any] = {}
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError("empty conditioner description; expected e.g. 'latency=50,loss=0.05'")
        for index, part in enumerate(parts):
            if "=" not in part:
                if index == 0 and part in cls.PRESETS:
                    values.update(cls.PRESETS[part])
                    continue
                raise ValueError(
                    f"bad conditioner part {part!r} in {text!r}: expected key=value "
                    f"(or a preset name first: {', '.join(cls.PRESETS)})"
                )
            key, _, raw = (s.strip() for s in part.partition("="))
            name = cls._KEYS.get(key)
            if name is None:
                raise ValueError(
                    f"unknown conditioner key {key!r} in {text!r}; known keys: "
                    f"{', '.join(sorted(set(cls._KEYS)))}"
                )
            values[name] = _parse_value(name, key, raw, text)
        return cls(**values)

    @classmethod
    def from_env(cls, var: str = "NETPLAY_CONDITIONER") -> ConditionerConfig | None:
        """Read a configuration from the environment variable ``var``; ``None`` if unset or empty.

        Raises ``ValueError`` naming the variable when its value cannot be parsed.
        """
        text = os.environ.get(var, "").strip()
        if not text:
            return None
        try:
            return cls.parse(text)
        except ValueError as exc:
            raise ValueError(f"environment variable {var}: {exc}") from None


def _parse_value(name: str, key: str, raw: str, text: str) -> Any:
    try:
        if name in ("seed", "queue_bytes"):
            return int(raw)
        if name in _PROBABILITIES and raw.endswith("%"):
            return float(raw[:-1]) / 100.0
        if name in ("latency_ms", "jitter_ms", "reorder_ms") and raw.endswith("ms"):
            raw = raw[:-2]
        return float(raw)
    except ValueError:
        raise ValueError(f"conditioner key {key!r} in {text!r} has a bad value {raw!r}") from None


@dataclass
class DirectionStats:
    """Counters for one direction of a conditioned link (packets, not messages)."""

    offered: int = 0
    """Packets handed to the conditioner."""
    delivered: int = 0
    """Packets passed on (duplicates included); counted when they actually leave the conditioner."""
    dropped: int = 0
    """Packets lost on purpose (random loss)."""
    overflowed: int = 0
    """Packets dropped because the bandwidth queue was full."""
    duplicated: int = 0
    """Extra copies scheduled."""
    reordered: int = 0
    """Packets held back so that later ones overtake them."""


class LinkScheduler:
    """Pure decision logic of one direction: given a packet's size and time, when is it delivered?

    No I/O and no clock: the caller passes ``now`` (seconds) and gets back absolute delivery times
    (seconds), an empty list for a dropped packet, two entries for a duplicated one.
    """

    def __init__(self, config: ConditionerConfig, rng: random.Random,
                 stats: DirectionStats | None = None) -> None:
        self.config = config
        self.stats = stats if stats is not None else DirectionStats()
        self._rng = rng
        self._busy_until = 0.0  # when the bandwidth-capped link finishes sending its queue
        self._last = 0.0  # delivery time of the last in-order packet (jitter never reorders)
        self._bytes_per_s = (
            config.bandwidth_kbps * 1000.0 / 8.0 if config.bandwidth_kbps is not None else None
        )

    def schedule(self, now: float, size: int) -> list[float]:
        """Decide the fate of a packet of ``size`` bytes offered at ``now``."""
        config, rng, stats = self.config, self._rng, self.stats
        stats.offered += 1
        if config.loss and rng.random() < config.loss:
            stats.dropped += 1
            return []
        departure = now
        if self._bytes_per_s is not None:
            start = max(now, self._busy_until)
            if (start - now) * self._bytes_per_s + size > config.queue_bytes:
                stats.overflowed += 1
                return []
            departure = self._busy_until = start + size / self._bytes_per_s
        delay = config.latency_ms
        if config.jitter_ms:
            delay += rng.uniform(-config.jitter_ms, config.jitter_ms)
        when = max(departure + delay / 1000.0, self._last)
        self._last = when
        if config.reorder and rng.random() < config.reorder:
            stats.reordered += 1
            when += rng.uniform(config.reorder_ms / 2, config.reorder_ms) / 1000.0
        times = [when]
        if config.duplicate and rng.random() < config.duplicate:
            stats.duplicated += 1
            times.append(when + rng.uniform(0.0, max(config.jitter_ms, 1.0)) / 1000.0)
        return times


class _TimerQueue:
    """Packets waiting for their delivery time; one ``call_later`` armed for the earliest."""

    def __init__(self, deliver: Callable[[list[tuple[bytes, int]]], None]) -> None:
        self._deliver = deliver
        self._heap: list[tuple[float, int, bytes, int]] = []
        self._counter = itertools.count()  # ties keep arrival order (heapq is not stable)
        self._handle: asyncio.TimerHandle | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, data: bytes, component: int) -> None:
        if self.closed:
            return  # the transport is gone: the packet is lost
        entry = (when, next(self._counter), data, component)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._arm()

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_at(self._heap[0][0], self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = asyncio.get_running_loop().time()
        due: list[tuple[bytes, int]] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, data, component = heapq.heappop(self._heap)
            due.append((data, component))
        if self._heap:
            self._arm()
        if due:
            self._deliver(due)

    def close(self) -> None:
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._heap.clear()


Direction = str  # "outbound" | "inbound"


@dataclass
class _Hooked:
    """One hooked ICE transport: its original send/receive and the two timer queues."""

    transport: Any
    send: Callable[[bytes], Awaitable[None]]
    receive: Callable[[bytes, int], None]
    queues: dict[Direction, _TimerQueue] = field(default_factory=dict)


class LinkConditioner:
    """Impairs every datagram of one ``RTCPeerConnection``; made by :func:`attach`.

    ``stats`` maps ``"outbound"`` and ``"inbound"`` to their :class:`DirectionStats`.
    """

    def __init__(self, outbound: ConditionerConfig | None, inbound: ConditionerConfig | None,
                 seed: int | None = None, stream: str = "") -> None:
        self._stream = stream
        self._seed = seed if seed is not None else random.randrange(2**32)
        if seed is None:
            logger.debug("link conditioner seed %d (pass seed= to reproduce)", self._seed)
        self.stats: dict[Direction, DirectionStats] = {
            "outbound": DirectionStats(), "inbound": DirectionStats()}
        self._schedulers: dict[Direction, LinkScheduler | None] = {}
        self._hooked: list[_Hooked] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.set(outbound=outbound, inbound=inbound)

    @property
    def outbound(self) -> ConditionerConfig | None:
        """The configuration of packets this peer sends (``None``: untouched)."""
        scheduler = self._schedulers["outbound"]
        return scheduler.config if scheduler else None

    @property
    def inbound(self) -> ConditionerConfig | None:
        """The configuration of packets this peer receives (``None``: untouched)."""
        scheduler = self._schedulers["inbound"]
        return scheduler.config if scheduler else None

    def set(self, *, outbound: ConditionerConfig | None | EllipsisType = ...,
            inbound: ConditionerConfig | None | EllipsisType = ...) -> None:
        """Change the impairment at runtime; ``None`` turns a direction off, omitted keeps it.

        Packets already waiting keep their delivery times.
        """
        for direction, config in (("outbound", outbound), ("inbound", inbound)):
            if config is ...:
                continue
            if config is None:
                self._schedulers[direction] = None
                continue
            if not isinstance(config, ConditionerConfig):
                raise TypeError(f"{direction} must be a ConditionerConfig or None, got {config!r}")
            seed = config.seed if config.seed is not None else self._seed
            rng = random.Random(f"{seed}/{self._stream}{direction}")
            self._schedulers[direction] = LinkScheduler(config, rng, self.stats[direction])

    @property
    def pending(self) -> int:
        """Packets waiting for their delivery time, both directions."""
        return sum(len(q) for h in self._hooked for q in h.queues.values())

    def close(self) -> None:
        """Discard every waiting packet and cancel the timers (done automatically on close)."""
        for hooked in self._hooked:
            for queue in hooked.queues.values():
                queue.close()
        for task in self._tasks:
            task.cancel()

    # -- hooking --------------------------------------------------------------------------

    def _hook(self, ice_transport: Any, send: Callable[[bytes], Awaitable[None]],
              receive: Callable[[bytes, int], None],
              ) -> tuple[Callable[[bytes], Awaitable[None]], Callable[[bytes, int], None]] | None:
        """Tap one ICE transport (called by :func:`netplay._aiortc.tap_datagrams` with its
        original ``send`` and ``receive``); returns their replacements."""
        if any(h.transport is ice_transport for h in self._hooked):
            return None
        hooked = _Hooked(ice_transport, send, receive)
        hooked.queues["outbound"] = _TimerQueue(lambda due: self._send_due(hooked, due))
        hooked.queues["inbound"] = _TimerQueue(lambda due: self._receive_due(hooked, due))
        self._hooked.append(hooked)

        async def conditioned_send(data: bytes) -> None:
            await self._send(hooked, data)

        def data_received(data: bytes, component: int) -> None:
            self._receive(hooked, data, component)

        def on_state() -> None:
            if ice_transport.state in ("closed", "failed"):
                for queue in hooked.queues.values():
                    queue.close()

        ice_transport.on("statechange", on_state)
        return conditioned_send, data_received

    async def _send(self, hooked: _Hooked, data: bytes) -> None:
        scheduler = self._schedulers["outbound"]
        queue = hooked.queues["outbound"]
        if scheduler is None and not len(queue):
            self.stats["outbound"].delivered += 1
            await hooked.send(data)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        times = scheduler.schedule(now, len(data)) if scheduler else [now]
        if len(times) == 1 and times[0] <= now and not len(queue):
            self.stats["outbound"].delivered += 1
            await hooked.send(data)
            return
        for when in times:
            queue.push(when, data, 1)

    def _send_due(self, hooked: _Hooked, due: list[tuple[bytes, int]]) -> None:
        task = asyncio.ensure_future(self._send_batch(hooked, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, hooked: _Hooked, due: list[tuple[bytes, int]]) -> None:
        for data, _ in due:
            try:
                await hooked.send(data)
            except ConnectionError:
                return  # the transport closed meanwhile: the rest is lost, as on a real link
            self.stats["outbound"].delivered += 1

    def _receive(self, hooked: _Hooked, data: bytes, component: int) -> None:
        scheduler = self._schedulers["inbound"]
        queue = hooked.queues["inbound"]
        if (scheduler is None and not len(queue)) or queue.closed:
            self.stats["inbound"].delivered += 1
            hooked.receive(data, component)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        times = scheduler.schedule(now, len(data)) if scheduler else [now]
        if len(times) == 1 and times[0] <= now and not len(queue):
            self.stats["inbound"].delivered += 1
            hooked.receive(data, component)
            return
        for when in times:
            queue.push(when, data, component)

    def _receive_due(self, hooked: _Hooked, due: list[tuple[bytes, int]]) -> None:
        for data, component in due:
            self.stats["inbound"].delivered += 1
            hooked.receive(data, component)


def attach(pc: RTCPeerConnection, outbound: ConditionerConfig | None,
           inbound: ConditionerConfig | None, *, seed: int | None = None,
           stream: str = "") -> LinkConditioner:
    """Condition every datagram ``pc`` sends (``outbound``) and receives (``inbound``).

    Call it right after creating the ``RTCPeerConnection``, before negotiation (it also hooks
    transports that already exist). ``seed`` seeds both directions unless a config has its own
    seed; with no seed at all a random one is chosen (logged at DEBUG). ``None`` for a direction
    leaves it untouched; :meth:`LinkConditioner.set` changes either at runtime. ``stream``
    names a separate sequence of decisions for the same seed (netplay passes the link's
    connection attempt, so a retry does not replay the drops that sank the last one). Raises
    ``RuntimeError`` when the installed aiortc/aioice lacks a detail the tap needs.
    """
    from . import _aiortc  # imports aiortc: keep ``import netplay.conditioner`` light

    conditioner = LinkConditioner(outbound, inbound, seed=seed,
                                  stream=f"attempt {stream}/" if stream else "")
    _aiortc.tap_datagrams(pc, conditioner._hook)
    return conditioner
