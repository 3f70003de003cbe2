"""The data plane of a :class:`~netplay.Mesh`: datagrams out and in, pacing, liveness, bad input.

Per peer, everything travels in netplay datagrams (:mod:`netplay.wire`) on one unreliable
SCTP stream:

- State: :meth:`DataPlane.send_state` only records the newest snapshot per peer; one datagram
  with a snapshot goes out at most ``send_rate_hz`` times a second (at once when the peer's
  last one left longer ago than that), and not while aiortc still holds an earlier datagram
  or snapshots queue in the network (so the game never builds latency).
- Lanes (every other channel, :mod:`netplay.lanes`): messages ride in the state datagrams and
  in datagrams of their own, sent at once (coalesced per loop iteration), paced by the link's
  :class:`~netplay.congestion.Pacer`, and only while aiortc holds nothing (its
  ``bufferedAmount`` is 0): a backlog waits in netplay, by priority, never in front of a
  snapshot. Acks ride in every datagram. A pending ack waits for the next snapshot datagram
  when the game's states go out steadily and the next is due within ``wire.MAX_ACK_DELAY``
  (else it goes on its own after :data:`ACK_DELAY`), and a proactive copy due shortly before
  a snapshot rides in it: a game's events cost no datagrams of their own.
- Liveness: any datagram counts as a sign of life; a heartbeat goes out when nothing else was
  sent for ``heartbeat_interval``, and silence for ``disconnect_timeout`` takes a peer down
  ("timed_out"). Heartbeats are never held back by a backlog.
- Bad input from a peer (not msgpack, wrong layout, oversized, unknown lane) is dropped,
  counted in the peer's stats and logged at WARNING at most once per 10 s per peer; it never
  raises into the game.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import wire
from ._ratelimit import WarnLimiter
from .channels import Channel
from .config import MeshConfig
from .congestion import Pacer
from .delta import copy_state
from .errors import MessageTooLarge, ProtocolError, UnknownChannel
from .events import Event, LeaveReason, MessageReceived, PeerJoined, PeerLeft
from .interpolation import InterpolationBuffer
from .lanes import Inbound, Outbound, lane_specs
from .remote import Leave, LinkDown, Remote
from .state import NOTHING, PeerState
from .stats import PeerStats
from .types import PeerId

if TYPE_CHECKING:
    from .conditioner import ConditionerConfig

__all__ = ["DataPlane"]

logger = logging.getLogger(__name__)

ACK_DELAY = 0.004
"""Seconds an ack of reliable records may wait for a datagram to ride in before it goes on
its own, when no snapshot is expected soon or records keep arriving."""
HEARTBEAT_NAP = 0.01
"""Seconds: the heartbeat task sleeps at least this long when a heartbeat is overdue but
could not go (nothing busy-waits on a link that refuses datagrams)."""
TIMER_SLACK = 0.0005
"""Seconds: a timer that fires this early still counts as on time (event loops round)."""
MIN_RTO_MARGIN = 0.01
"""Seconds above the peer's longest ack delay that a record waits before it counts as lost
(the round trip on a fast link)."""
RIDE_EVIDENCE = 1.0
"""Seconds: acks and copies ride in state datagrams only while snapshots from the peer arrived
this recently, with none missing in :class:`~netplay.snapshots.SnapshotBuffer`'s loss window
(evidence of a clean path; see :func:`lossy`)."""
FEEDBACK_INTERVAL = 0.05
"""Seconds: a peer that streams snapshots to us hears back at least this often (acks for its
delta baselines and its slow-link detection, clock echo), even when we send nothing."""
STATE_BUFFER_ALLOWANCE = 2 * 1200
"""Bytes aiortc may hold when a snapshot is due: the lanes leave at most about one datagram
there, and the snapshot goes right behind it."""
HEADER_ROOM = 64
"""Bytes of a datagram besides its snapshot, ack bits and records (an upper bound)."""
MAX_BURST = 64
"""Most datagrams one pump sends before it yields to the event loop."""
STATE_QUEUE_DELAY = 0.1
"""Seconds beyond the smallest recent RTT a state datagram may go unacknowledged before the
next one is held back (it is queueing somewhere: the link is slower than the game sends)."""
BYE_LINGER = 0.3


def flush_delay(last_sent: float, now: float, send_rate_hz: float) -> float:
    """Seconds to wait before the next state datagram to a peer (0: send now).

    ``last_sent`` and ``now`` must come from the same clock (``time.monotonic()``): the event
    loop's ``loop.time()`` is not it (uvloop's is a cached millisecond clock), and mixing the
    two made the timer round up to the next millisecond tick.
    """
    return max(0.0, last_sent + 1.0 / send_rate_hz - now)


def lossy(r: Remote, now: float) -> bool:
    """Whether the path to ``r`` may lose packets: snapshots from ``r`` went missing lately,
    or none arrived in the last :data:`RIDE_EVIDENCE` seconds to tell (``r`` sends no
    states). Our acks and copies then go at once instead of waiting for a state datagram to
    ride in, where the wait would add to every recovery (at 50 ms one way and 5% loss,
    riding put 22 ms on the reliable p99)."""
    snapshots = r.state.snapshots
    latest = snapshots.latest
    return latest is None or now - latest.received_at > RIDE_EVIDENCE \
        or snapshots.loss_ratio > 0.0


def ride_at(r: Remote, now: float) -> float | None:
    """When our next state datagram to ``r`` is expected, for acks and copies to ride in;
    ``None`` (they go on their own) when none is expected or the path may be lossy."""
    return None if lossy(r, now) else r.state.next_snapshot_at(now)


class DataPlane:
    """The send/receive half of a session: the remote peers' records, the channels, every
    datagram out and in.

    It knows nothing of the lobby: the session gives it ``emit`` (report an event),
    ``check_open`` (raise ``RuntimeError`` / ``ChannelClosed`` when sends are not allowed)
    and ``on_alias`` (a peer announced its new lobby id).
    """

    def __init__(self, config: MeshConfig, *, emit: Callable[[Event], None],
                 check_open: Callable[[], object],
                 on_alias: Callable[[Remote, PeerId], None]) -> None:
        self.config = config
        self._emit = emit
        self._check_open = check_open
        self._on_alias = on_alias
        self.remotes: dict[PeerId, Remote] = {}
        """Every other member we track, connected or not, by our id for it."""
        self.live: tuple[Remote, ...] = ()
        """Connected remotes, replaced (never mutated) on every join and leave, so the
        game's thread may read it."""
        self.channels = [
            Channel(i, c, config.max_queued, self._channel_sender(i))
            for i, c in enumerate(config.channels)
        ]
        self._states: dict[PeerId, Any] = {}
        self._tick = 0
        self._lanes = lane_specs(config.channels)
        self._limits = config.unpack_limits()
        self._warn = WarnLimiter(logger)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._conditioner: ConditionerConfig | None = config.conditioner
        if self._conditioner is None:
            from .conditioner import ConditionerConfig

            self._conditioner = ConditionerConfig.from_env()
        self._peer_conditioners: dict[PeerId, ConditionerConfig | None] = {}

    # -- peers ----------------------------------------------------------------------------

    def add_remote(self, peer_id: PeerId, name: str | None, offerer: bool) -> Remote:
        """Start tracking ``peer_id`` with fresh lanes, state and pacer."""
        tick = 1.0 / self.config.send_rate_hz
        min_rto = max(2 * tick, wire.MAX_ACK_DELAY + MIN_RTO_MARGIN)
        r = Remote(
            peer_id, name, offerer,
            PeerState(time.monotonic(), delta=self.config.delta_compression,
                      interpolation=InterpolationBuffer(lerp=self.config.interpolate)),
            outbound=Outbound(self._lanes, min_rto=min_rto, copy_gap=max(tick, 0.005)),
            inbound=Inbound(self._lanes, self._limits), pacer=Pacer())
        self.remotes[peer_id] = r
        return r

    def joined(self, r: Remote) -> None:
        """``r``'s link opened: it is live; report ``PeerJoined``."""
        self.live = (*(x for x in self.live if x is not r), r)
        self._emit(PeerJoined(r.id, r.label))

    def lost(self, r: Remote, reason: LeaveReason, detail: str = "") -> None:
        """``r`` went away: not live any more; report ``PeerLeft`` (``detail``: why)."""
        self.live = tuple(x for x in self.live if x is not r)
        self._states.pop(r.id, None)
        self._warn.forget(r.id)
        self._emit(PeerLeft(r.id, reason, detail))

    def channel(self, name: str) -> Channel:
        """The configured channel called ``name``; ``UnknownChannel`` if none."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise UnknownChannel(f"no channel named {name!r}; configured: "
                             f"{', '.join(c.name for c in self.channels)}")

    def _channel_sender(self, index: int) -> Any:
        if index == 0:
            return lambda body, to: self.send_state(body, to)
        if self.config.channels[index].is_reliable:
            return lambda body, to: self.send_reliable(index, wire.pack_body(body), to)
        return lambda body, to: self.send_unreliable(index, body, to)

    def start(self) -> None:
        """Start the heartbeat and silence check."""
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="netplay-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def targets(self, to: PeerId | None, *, reconnecting: bool = False) -> list[Remote]:
        """Connected peers addressed by ``to``; with ``reconnecting``, also peers whose link
        is being rebuilt (reliable messages wait for the new link)."""
        self._check_open()

        def ok(r: Remote) -> bool:
            if r.connected and r.link is not None:
                return True
            return reconnecting and r.was_connected and not r.done

        if to is None:  # list(): SyncMesh calls this from the game's thread too
            return [r for r in list(self.remotes.values()) if ok(r)]
        if not isinstance(to, str):
            raise TypeError(f"to must be a peer id (str) or None, got {type(to).__name__}")
        r = self.remotes.get(to)
        if r is None or not ok(r):
            logger.debug("not sending to %s: not connected", to)
            return []
        return [r]

    # -- state ----------------------------------------------------------------------------

    def send_state(self, state: Any, to: PeerId | None = None, *, tick: int | None = None
                   ) -> bool:
        """Send ``state`` unreliably to ``to`` or every connected peer; newest wins.

        Never blocks: the state goes out at once to a peer whose last datagram left at least
        ``1 / send_rate_hz`` ago; otherwise it waits for that peer's next datagram and replaces
        any state still waiting (newest wins). ``tick`` defaults to a counter.
        The value is encoded (and, with delta compression, copied) once, here, for every
        receiver: mutating it afterwards does not change what is sent. Returns False when no
        connected peer was addressed. Raises ``MessageTooLarge`` for a state over one datagram
        (64 KiB less headers; keep states under ``state_size_warning``), ``TypeError`` for a
        value msgpack can't encode and ``ValueError`` for a ``tick`` beyond ``±2**53``
        (docs/wire.md section 3.1).
        """
        packed = wire.pack_body(state)  # fails here, in the game's call, if it can't be sent
        self.check_size(packed, reliable=False)
        if self.config.delta_compression:
            state = copy_state(state)  # the baseline every receiver's delta encoder keeps
        return self.queue_state(state, to, tick, packed)

    def queue_state(self, state: Any, to: PeerId | None, tick: int | None,
                     packed: bytes | None = None) -> bool:
        """Queue ``state`` for ``to``. ``packed``: its encoding, and ``state`` is then a
        private copy (see :meth:`PeerState.set_pending`)."""
        if tick is None:
            self._tick += 1
            tick = self._tick
        elif type(tick) is not int:
            raise TypeError("tick must be an int")
        else:
            wire.check_tick(tick)  # ValueError beyond 2**53, here in the game's call
        targets = self.targets(to)
        for r in targets:
            r.state.set_pending(state, tick, packed)
            if r.flush_handle is None:
                self._schedule_flush(r)
        return bool(targets)

    def _schedule_flush(self, r: Remote) -> None:
        """Send ``r``'s pending snapshot now if its tick budget allows, else when it does.

        Now means in this call, not in a ``call_soon`` callback: a callback would run only
        after whatever else is ready in the loop (incoming datagrams, each ~0.1 ms in aiortc),
        which in a busy mesh delayed every snapshot by the others' processing.
        """
        if r.flush_handle is not None:
            return
        wait = flush_delay(r.state.last_snapshot_sent, time.monotonic(), self.config.send_rate_hz)
        if wait > 0.0:
            r.flush_handle = asyncio.get_running_loop().call_later(wait, self._flush, r)
        else:
            self._flush(r)

    def _flush(self, r: Remote) -> None:
        r.flush_handle = None
        link = r.link
        if link is None or not r.connected:
            return
        now = time.monotonic()
        # aiortc may hold about one lane datagram in front of a snapshot while lanes have
        # traffic; with none, it holds nothing (snapshots never queue behind snapshots)
        allowance = 0 if r.outbound.idle() else STATE_BUFFER_ALLOWANCE
        rtt_min = r.state.clock.rtt_min or 0.0
        if link.buffered() > allowance or (
                now - r.state.last_snapshot_sent < self.config.heartbeat_interval and (
                    r.state.snapshot_in_flight_age(now) > rtt_min + STATE_QUEUE_DELAY
                    or r.state.snapshots_over_budget(
                        now, rtt_min + FEEDBACK_INTERVAL + 2.0 / self.config.send_rate_hz))):
            # aiortc still holds an earlier datagram, or snapshots queue in the network (a
            # slow link: the oldest unacknowledged one is late, or more are unacknowledged
            # than the link delivers in a round trip): try again next tick, keeping only the
            # newest snapshot. A heartbeat's worth of waiting lets one through (its ack tells
            # what was lost), however busy the lanes keep the link.
            r.flush_handle = asyncio.get_running_loop().call_later(
                1.0 / self.config.send_rate_hz, self._flush, r)
            if r.inbound.dirty:
                r.ack_at = now  # the acks that waited for this datagram go on their own
            if r.ack_at is not None or r.outbound.has_new() or r.outbound.has_lost():
                self.kick(r)  # and so does what else waited for it
            return
        self._send_datagram(r, now, snapshot=True)
        if r.outbound.has_new() or r.outbound.has_lost():
            self.kick(r)  # more than fitted

    def _send_datagram(self, r: Remote, now: float, *, snapshot: bool) -> int:
        """Build and send one datagram to ``r``: the pending snapshot (with ``snapshot``),
        acks, and the lanes' due records as far as the datagram's room and the pacer allow.
        Returns its size (0 when it could not be sent)."""
        link, out = r.link, r.outbound
        assert link is not None
        head = r.state.head(now, snapshot=snapshot)
        acks = r.inbound.acks()
        used = len(head) + HEADER_ROOM + (len(acks.bits) if acks is not None else 0)
        room = wire.TARGET_DATAGRAM - used
        if len(head) <= HEADER_ROOM:  # no snapshot: room for at least one whole piece
            room = max(room, out.piece_size + 32)
        if out.idle() or room <= 0:
            records: list[bytes] = []
        else:
            budget = r.pacer.available(now) if link.buffered() == 0 else 0.0
            records = out.take(now, room, budget)
        data = head + wire.pack_tail(out.epoch, acks, records)
        size = len(data)
        if size > wire.MAX_DATAGRAM:
            self._warn.warn(("big", r.id), "datagram for %s is %d bytes, over the %d-byte limit "
                            "of an unreliable message: state dropped", r.id, size,
                            wire.MAX_DATAGRAM)
            data = r.state.head(now, snapshot=False) + wire.pack_tail(out.epoch, acks, records)
            size = len(data)
        elif size > self.config.state_size_warning and not r.state.size_warned \
                and len(head) > wire.TARGET_DATAGRAM // 2:
            r.state.size_warned = True
            logger.warning("state datagram for %s is %d bytes (budget %d): aiortc splits it into "
                           "%d SCTP chunks and loses it whole if one is lost", r.id, size,
                           self.config.state_size_warning, -(-size // 1200))
        if not link.send(data):
            return 0
        if acks is not None:
            r.unacked_datagrams = 0
        if r.ack_at is not None:
            r.ack_at = None
            self._retime_pump(r, now)
        r.pacer.spend(size)
        r.state.stats.on_send(now, size)
        return size

    def _snapshot_due(self, r: Remote) -> bool:
        """A datagram with a snapshot goes to ``r`` within a tick (it will carry acks and
        records, so they need no datagram of their own)."""
        handle = r.flush_handle
        return isinstance(handle, asyncio.TimerHandle) and handle.when() - \
            asyncio.get_running_loop().time() <= 1.0 / self.config.send_rate_hz

    def _ack_deadline(self, r: Remote, now: float) -> float:
        """When a pending ack of reliable records goes on its own: with the next snapshot
        datagram if the game's states go out steadily and the next is due within
        :data:`~netplay.wire.MAX_ACK_DELAY` (the usual case: an event's ack costs no datagram
        of its own), else after :data:`ACK_DELAY`. Two datagrams of records unacknowledged
        (a burst, a transfer) are acknowledged after :data:`ACK_DELAY`, so the sender's
        window and pacing keep moving."""
        soon = now + ACK_DELAY
        if r.unacked_datagrams >= 2:
            return soon
        expected = ride_at(r, now)
        if expected is None or r.state.snapshot_gap is None \
                or expected > now + wire.MAX_ACK_DELAY:
            return soon
        ride = expected + r.state.snapshot_gap / 4  # a little late: the snapshot goes first
        return min(max(soon, ride), now + wire.MAX_ACK_DELAY)

    def kick(self, r: Remote) -> None:
        """Something waits to go to ``r`` (a message, an ack, room in aiortc's buffer): pump
        once the current callback returns, so a frame's sends share datagrams."""
        handle = r.pump_handle
        if handle is not None:
            if r.pump_at <= 0.0:
                return  # already due at once
            handle.cancel()
        r.pump_at = 0.0
        r.pump_handle = asyncio.get_running_loop().call_soon(self._pump, r)

    def _pump_later(self, r: Remote, at: float) -> None:
        handle = r.pump_handle
        if handle is not None:
            if r.pump_at <= at:
                return
            handle.cancel()
        r.pump_at = at
        r.pump_handle = asyncio.get_running_loop().call_later(
            max(0.0, at - time.monotonic()), self._pump, r)

    def _retime_pump(self, r: Remote, now: float) -> None:
        """Our acks just went out: a pump timer set for them is moved to what the lanes need
        next, or dropped (a steady game would otherwise wake the loop for nothing after
        every snapshot it received)."""
        handle = r.pump_handle
        if handle is None or r.pump_at <= 0.0:  # none, or one due at once
            return
        due = r.outbound.next_timeout(ride_at(r, now))
        if due is not None and due <= r.pump_at + TIMER_SLACK:
            return
        handle.cancel()
        r.pump_handle = None
        if due is not None:
            self._pump_later(r, due)

    def _pump(self, r: Remote) -> None:
        """Send what the lanes have due to ``r``: new messages and resends while the pacer and
        aiortc's buffer allow, and a pending ack; then schedule the next pump."""
        r.pump_handle = None
        link = r.link
        if link is None or not link.opened or link.closed:
            return
        out, pacer = r.outbound, r.pacer
        now = time.monotonic()
        ride = ride_at(r, now)  # copies due before it ride in it
        for _ in range(MAX_BURST):
            work = out.has_new() or out.has_lost() or out.has_due(now, ride)
            ack = r.ack_at is not None and r.ack_at <= now + TIMER_SLACK
            if not work and not ack:
                break  # (a tick's events usually rode in its state datagram already)
            if link.buffered() > 0:
                pacer.mark_limited()
                r.wants_drain = True
                return  # aiortc holds data: on_drain kicks us again
            if work and pacer.available(now) <= 0 and not ack:
                wait = pacer.wait(wire.TARGET_DATAGRAM, now)
                self._pump_later(r, now + max(wait, 0.0005))
                return
            if not self._send_datagram(r, now, snapshot=False):
                return
            if not (out.has_new() or out.has_lost()):
                break
            now = time.monotonic()
        else:
            self.kick(r)  # more to send: after other callbacks had their turn
            return
        timeout = out.next_timeout(ride)
        if r.ack_at is not None and (timeout is None or r.ack_at < timeout):
            timeout = r.ack_at
        if timeout is not None:
            self._pump_later(r, timeout)

    async def _heartbeat(self) -> None:
        """Heartbeats to idle peers, and the silence check: it wakes at the exact moment the
        first peer would have been silent for ``disconnect_timeout``."""
        config = self.config
        while True:
            # sleep until the first peer is due a heartbeat or would be silent too long (a
            # steady game sends states, so this wakes about once per heartbeat_interval)
            now = time.monotonic()
            wake = now + config.heartbeat_interval
            for r in self.remotes.values():
                link = r.link
                if link is None or not r.connected:
                    continue
                if r.state.timeout_posted != link.attempt:
                    wake = min(wake, r.state.last_heard + config.disconnect_timeout)
                if r.flush_handle is None:
                    wake = min(wake, max(r.state.last_sent + config.heartbeat_interval,
                                         now + HEARTBEAT_NAP))
            await asyncio.sleep(max(0.0, wake - now) + 0.001)
            now = time.monotonic()
            for r in list(self.remotes.values()):
                link = r.link
                if link is None or not r.connected:
                    continue
                if now - r.state.last_heard >= config.disconnect_timeout:
                    logger.debug("peer %s silent for %.1f s", r.id, now - r.state.last_heard)
                    if r.state.timeout_posted != link.attempt:
                        r.state.timeout_posted = link.attempt  # the supervisor reports it
                        r.inbox.put_nowait(LinkDown(link.attempt, "timed_out"))
                    continue
                if now - r.state.last_sent >= config.heartbeat_interval \
                        and r.flush_handle is None:
                    self._send_datagram(r, now, snapshot=False)

    def states(self) -> dict[PeerId, Any]:
        """The newest state received from each connected peer."""
        return dict(self._states)

    def interpolated(self, now: float | None = None) -> dict[PeerId, Any]:
        """Each connected peer's state for rendering at ``now`` (default: the current
        ``time.monotonic()``): interpolated ``delay`` seconds in the past, extrapolated a
        little when snapshots stop. Peers with no snapshot yet are left out."""
        if now is None:
            now = time.monotonic()
        out = {}
        for r in self.live:  # a tuple swapped whole: safe to read from the game thread
            if r.id in self._states:
                with r.state.lock:
                    out[r.id] = r.state.interp.sample(now)
        return out

    def stats(self, peer: PeerId) -> PeerStats:
        """The net_graph of one peer (RTT, jitter, loss, rates, ...); ``KeyError`` if unknown."""
        r = self.remotes.get(peer)
        if r is None:
            raise KeyError(f"no peer {peer!r} in this mesh")
        return r.state.peer_stats(time.monotonic())

    def all_stats(self) -> dict[PeerId, PeerStats]:
        """:meth:`stats` of every connected peer."""
        now = time.monotonic()
        return {r.id: r.state.peer_stats(now) for r in self.live}

    # -- messages -------------------------------------------------------------------------

    def send_event(self, event: Any, to: PeerId | None = None) -> bool:
        """Send ``event`` reliably (ordered, exactly once) to ``to`` or every peer.

        Never blocks. Big events are cut into pieces; they wait, paced, behind nothing on
        higher-priority channels. A peer whose link is being rebuilt gets it on the new link.
        False when nobody was addressed. Raises ``MessageTooLarge`` over
        ``MeshConfig.max_message_size`` and ``TypeError`` for a value msgpack can't encode.
        """
        return self.send_reliable(1, wire.pack_body(event), to)

    def check_size(self, payload: bytes, *, reliable: bool) -> None:
        """``MessageTooLarge`` when ``payload`` can't be sent on such a channel."""
        if reliable:
            limit = self.config.max_message_size
            if len(payload) > limit:
                raise MessageTooLarge(
                    f"message of {len(payload)} bytes is over MeshConfig.max_message_size "
                    f"({limit} bytes, which receivers enforce too): split it, or raise "
                    "max_message_size on every player", len(payload), limit)
        else:
            limit = wire.MAX_DATAGRAM - 2 * HEADER_ROOM
            if len(payload) > limit:
                raise MessageTooLarge(
                    f"unreliable message of {len(payload)} bytes is over the {limit}-byte "
                    "datagram limit: send it on a reliable channel, which cuts big messages "
                    "into pieces", len(payload), limit)

    def send_reliable(self, index: int, payload: bytes, to: PeerId | None) -> bool:
        """Queue the packed message ``payload`` on reliable lane ``index`` for ``to`` (or
        every peer, including those being reconnected)."""
        self.check_size(payload, reliable=True)
        targets = self.targets(to, reconnecting=True)
        for r in targets:
            r.outbound.push(index, payload)
            if r.connected and not self._snapshot_due(r):  # else it rides with the snapshot
                self.kick(r)
        return bool(targets)

    def send_unreliable(self, index: int, body: Any, to: PeerId | None) -> bool:
        """Send ``body`` once on unreliable lane ``index`` to ``to`` or every connected peer."""
        payload = wire.pack_body(body)
        self.check_size(payload, reliable=False)
        targets = self.targets(to)
        for r in targets:
            r.outbound.push_unreliable(index, payload)
            self.kick(r)
        return bool(targets)

    def send_control(self, r: Remote, body: list[Any]) -> None:
        """Queue a control message (lane 0: ``bye``, ``alias``) to ``r``."""
        r.outbound.push(wire.CONTROL_LANE, wire.pack_body(body))
        if r.connected and r.link is not None:
            self.kick(r)

    async def say_bye(self, remotes: list[Remote], reason: str) -> None:
        """Tell connected peers we go (a control message), waiting briefly for its ack."""
        waiting = []
        for r in remotes:
            if r.connected and r.link is not None:
                self.send_control(r, ["bye", reason])
                waiting.append(r)
        deadline = time.monotonic() + BYE_LINGER
        while waiting and time.monotonic() < deadline:
            if all(r.outbound.pending(wire.CONTROL_LANE) == 0 for r in waiting):
                break
            await asyncio.sleep(0.01)

    # -- receiving ------------------------------------------------------------------------

    def on_bad(self, r: Remote, index: int, why: str) -> None:
        """Count and (rate-limited) log bad input from ``r`` on stream or lane ``index``."""
        r.state.stats.on_bad_packet()
        channels = self.config.channels
        name = repr(channels[index].name) if 0 <= index < len(channels) else f"id {index}"
        self._warn.warn(r.id, "dropped bad packet from %s on channel %s: %s", r.id, name, why)

    def on_frame(self, r: Remote, data: bytes | str) -> None:
        """Take one datagram from ``r``: liveness, snapshot, acks, records."""
        now = time.monotonic()
        r.state.last_heard = now  # any datagram is a sign of life, even a malformed one
        r.state.stats.on_receive(now, len(data))
        if isinstance(data, str):
            self.on_bad(r, 0, "text message (netplay sends binary only)")
            return
        try:
            datagram = wire.unpack_datagram(data)
        except ProtocolError as exc:
            self.on_bad(r, 0, str(exc))
            return
        try:
            state = r.state.receive(datagram, now)
        except ProtocolError as exc:  # a bad snapshot: the acks and records still count
            self.on_bad(r, 0, str(exc))
            state = NOTHING
        except Exception:  # netplay's own bug, not the peer's: say so, loudly but rarely
            self._warn.error(("internal", "snapshot"), "netplay internal error decoding a "
                             "snapshot from %s (please report it)", r.id, exc_info=True)
            state = NOTHING
        if state is not NOTHING and r.connected:
            self._states[r.id] = state
            self.channels[0]._deliver(r.id, state)
        if datagram.acks is not None and r.outbound.on_acks(datagram.acks, now):
            # the path's round trip without the peer's holding time (its acks may wait for
            # its next snapshot, up to wire.MAX_ACK_DELAY): queueing is what pacing follows
            path_rtt = r.state.clock.rtt_last if datagram.echo is not None else None
            r.pacer.on_rtt(r.outbound.rtt.latest if path_rtt is None else path_rtt, now)
            self.kick(r)  # the window moved, maybe something was lost
        inbound = r.inbound
        if not inbound.on_epoch(datagram.epoch):
            return
        for record in datagram.records:
            try:
                delivered = inbound.receive(record)
            except ProtocolError as exc:
                self.on_bad(r, record.lane, str(exc))
                delivered = getattr(exc, "delivered", [])  # BadMessage: its lane moves on
            for lane, body in delivered:
                if lane == wire.CONTROL_LANE:
                    self._on_control(r, body)
                else:
                    channel = self.channels[lane]
                    channel._deliver(r.id, body)
                    self._emit(MessageReceived(r.id, channel.name, body))
        if datagram.records:
            r.unacked_datagrams += 1
        if inbound.dirty:
            if lossy(r, now) or not self._snapshot_due(r):
                # (else the snapshot's datagram carries the ack)
                self._ack_by(r, self._ack_deadline(r, now))
        elif datagram.snapshot is not None or inbound.dup_seen:
            self._ack_by(r, max(now + ACK_DELAY, r.state.last_sent + FEEDBACK_INTERVAL))

    def _ack_by(self, r: Remote, at: float) -> None:
        """Our acks must reach ``r`` by ``at``: a datagram goes then unless one went before."""
        if r.ack_at is None or at < r.ack_at:
            r.ack_at = at
            self._pump_later(r, at)

    def _on_control(self, r: Remote, body: Any) -> None:
        if not (isinstance(body, list) and len(body) == 2 and isinstance(body[1], str)
                and 0 < len(body[1]) <= 64):
            self.on_bad(r, 0, "bad control message")
        elif body[0] == "bye":
            r.inbox.put_nowait(Leave("kicked" if body[1] == "kicked" else "left"))
        elif body[0] == "alias":
            self._on_alias(r, body[1])
        else:
            self.on_bad(r, 0, f"unknown control message {body[0]!r}")

    # -- link conditioner -----------------------------------------------------------------

    def conditioner_for(self, peer_id: PeerId) -> ConditionerConfig | None:
        """The link conditioner a new connection to ``peer_id`` starts with."""
        return self._peer_conditioners.get(peer_id, self._conditioner)

    def set_conditioner(self, config: ConditionerConfig | None, peer: PeerId | None = None
                        ) -> None:
        """Impair links (both directions) from now on: every peer's, or only ``peer``'s.

        ``None`` turns it off. Existing links change at once; new links use it too.
        """
        if peer is None:
            self._conditioner = config
            self._peer_conditioners.clear()
        else:
            self._peer_conditioners[peer] = config
        for r in self.remotes.values():
            if (peer is None or r.id == peer) and r.link is not None:
                r.link.set_conditioner(config)
