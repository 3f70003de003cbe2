"""The data plane of a :class:`~netplay.Mesh`: sending, receiving, heartbeats, bad input.

- State: :meth:`DataPlane.send_state` only records the newest snapshot per peer; one datagram
  per peer goes out at most ``send_rate_hz`` times a second (at once when the peer's last one
  left longer ago than that), and not while aiortc still holds an earlier state datagram for
  that peer (so the game never builds latency). Heartbeats fill
  the gaps every ``heartbeat_interval``, and silence for ``disconnect_timeout`` takes a peer
  down ("timed_out").
- Reliable channels: fragmented and paced by :class:`~netplay.channels.ReliableSender`.
- Bad input from a peer (not msgpack, wrong envelope, oversized, wrong channel) is dropped,
  counted in the peer's stats and logged at WARNING at most once per 10 s per peer; it never
  raises into the game.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from itertools import count
from typing import TYPE_CHECKING, Any

from . import wire
from ._ratelimit import WarnLimiter
from .channels import Channel
from .config import MeshConfig
from .delta import copy_state
from .errors import ProtocolError
from .events import Event, MessageReceived
from .state import NOTHING
from .stats import PeerStats
from .types import PeerId

if TYPE_CHECKING:
    from .conditioner import ConditionerConfig
    from .remote import Remote

__all__ = ["DataPlane"]

logger = logging.getLogger(__name__)

STATE_BUFFER_LIMIT = 4096
"""Bytes aiortc may hold on an unreliable channel before heartbeats and unreliable messages
are held back. (A state datagram waits while aiortc holds any earlier one.)"""
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


class DataPlane:
    """Send/receive half of a Mesh (a mixin: the Mesh supplies remotes and events)."""

    _remotes: dict[PeerId, Remote]
    _live: tuple[Remote, ...] = ()
    """Connected remotes, replaced (never mutated) on every join and leave."""

    def __init__(self, config: MeshConfig) -> None:
        self.config = config
        self._channels = [
            Channel(i, c, config.max_queued, self._channel_sender(i))
            for i, c in enumerate(config.channels)
        ]
        self._states: dict[PeerId, Any] = {}
        self._tick = 0
        self._message_ids = count()
        self._warn = WarnLimiter(logger)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._conditioner: ConditionerConfig | None = config.conditioner
        if self._conditioner is None:
            from .conditioner import ConditionerConfig

            self._conditioner = ConditionerConfig.from_env()
        self._peer_conditioners: dict[PeerId, ConditionerConfig | None] = {}

    def _emit(self, event: Event) -> None:
        raise NotImplementedError

    def _check_open(self) -> Any:
        raise NotImplementedError

    def _on_alias(self, r: Remote, lobby_id: PeerId) -> None:
        raise NotImplementedError

    def _channel_sender(self, index: int) -> Any:
        if index == 0:
            return lambda body, to: self.send_state(body, to)
        if self.config.channels[index].is_reliable:
            return lambda body, to: self._send_reliable(index, body, to)
        return lambda body, to: self._send_unreliable(index, body, to)

    def _start_dataplane(self) -> None:
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="netplay-heartbeat")

    async def _stop_dataplane(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _targets(self, to: PeerId | None) -> list[Remote]:
        self._check_open()
        if to is None:
            return [r for r in self._remotes.values() if r.connected and r.link is not None]
        if not isinstance(to, str):
            raise TypeError(f"to must be a peer id (str) or None, got {type(to).__name__}")
        r = self._remotes.get(to)
        if r is None or not r.connected or r.link is None:
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
        connected peer was addressed.
        """
        packed = wire.pack_body(state)  # fails here, in the game's call, if it can't be sent
        if self.config.delta_compression:
            state = copy_state(state)  # the baseline every receiver's delta encoder keeps
        return self._queue_state(state, to, tick, packed)

    def _queue_state(self, state: Any, to: PeerId | None, tick: int | None,
                     packed: bytes | None = None) -> bool:
        """Queue ``state`` for ``to``. ``packed``: its encoding, and ``state`` is then a
        private copy (see :meth:`PeerState.set_pending`)."""
        if tick is None:
            self._tick += 1
            tick = self._tick
        elif type(tick) is not int:
            raise TypeError("tick must be an int")
        targets = self._targets(to)
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
        wait = flush_delay(r.state.last_sent, time.monotonic(), self.config.send_rate_hz)
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
        if link.buffered(0) > 0 or (
                link.in_flight_age(0) > (r.state.clock.rtt_min or 0.0) + STATE_QUEUE_DELAY
                and now - r.state.last_sent < self.config.heartbeat_interval):
            # aiortc still holds an earlier datagram, or they queue in the network (a slow
            # link): try again next tick, keeping only the newest snapshot. A heartbeat's
            # worth of waiting lets one through (its SACKs report losses, ending the wait).
            r.flush_handle = asyncio.get_running_loop().call_later(
                1.0 / self.config.send_rate_hz, self._flush, r)
            return
        self._send_datagram(r, now)

    def _send_datagram(self, r: Remote, now: float) -> None:
        assert r.link is not None
        data = r.state.build_frame(now)
        size = len(data)
        if size > wire.MAX_STATE_DATAGRAM:
            self._warn.warn(("big", r.id), "state for %s is %d bytes, over the %d-byte limit of "
                            "an unreliable message: dropped", r.id, size, wire.MAX_STATE_DATAGRAM)
            return
        if size > self.config.state_size_warning and not r.state.size_warned:
            r.state.size_warned = True
            logger.warning("state datagram for %s is %d bytes (budget %d): aiortc splits it into "
                           "%d SCTP chunks and loses it whole if one is lost", r.id, size,
                           self.config.state_size_warning, -(-size // 1200))
        if r.link.send(0, data):
            r.state.stats.on_send(now, size)

    async def _heartbeat(self) -> None:
        config = self.config
        period = config.heartbeat_interval / 2
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for r in list(self._remotes.values()):
                link = r.link
                if link is None or not r.connected:
                    continue
                if now - r.state.last_heard > config.disconnect_timeout:
                    logger.debug("peer %s silent for %.1f s", r.id, now - r.state.last_heard)
                    if r.state.timeout_posted != link.attempt:
                        r.state.timeout_posted = link.attempt  # the supervisor reports it
                        r.inbox.put_nowait(("down", link.attempt, "timed_out"))
                    continue
                if now - r.state.last_sent >= config.heartbeat_interval \
                        and r.flush_handle is None and link.buffered(0) <= STATE_BUFFER_LIMIT:
                    self._send_datagram(r, now)

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
        for r in self._live:  # a tuple swapped whole: safe to read from the game thread
            if r.id in self._states:
                with r.state.lock:
                    out[r.id] = r.state.interp.sample(now)
        return out

    def stats(self, peer: PeerId) -> PeerStats:
        """The net_graph of one peer (RTT, jitter, loss, rates, ...); ``KeyError`` if unknown."""
        r = self._remotes.get(peer)
        if r is None:
            raise KeyError(f"no peer {peer!r} in this mesh")
        return r.state.peer_stats(time.monotonic())

    def all_stats(self) -> dict[PeerId, PeerStats]:
        """:meth:`stats` of every connected peer."""
        now = time.monotonic()
        return {r.id: r.state.peer_stats(now) for r in self._live}

    def _forget_peer_state(self, peer_id: PeerId) -> None:
        self._states.pop(peer_id, None)
        self._warn.forget(peer_id)

    # -- messages -------------------------------------------------------------------------

    def send_event(self, event: Any, to: PeerId | None = None) -> bool:
        """Send ``event`` reliably (ordered, exactly once) to ``to`` or every connected peer.

        Never blocks; large events are fragmented and paced. False when nobody was addressed.
        """
        return self._send_reliable(1, event, to)

    def _send_reliable(self, index: int, body: Any, to: PeerId | None) -> bool:
        return self._send_reliable_payload(index, wire.pack_body(body), to)

    def _send_reliable_payload(self, index: int, payload: bytes, to: PeerId | None) -> bool:
        if len(payload) > self.config.max_message_size:
            raise ValueError(f"message of {len(payload)} bytes is over max_message_size "
                             f"({self.config.max_message_size})")
        targets = self._targets(to)
        if not targets:
            return False
        message_id = next(self._message_ids)
        now = time.monotonic()
        for r in targets:
            sender = r.senders.get(index)
            if sender is not None:
                sender.send(payload, message_id)
                r.state.stats.on_send(now, len(payload))
        return True

    def _send_unreliable(self, index: int, body: Any, to: PeerId | None) -> bool:
        frame = wire.pack_message(body)
        if len(frame) > wire.MAX_STATE_DATAGRAM:
            raise ValueError(f"unreliable message of {len(frame)} bytes is over the "
                             f"{wire.MAX_STATE_DATAGRAM}-byte limit")
        sent = False
        now = time.monotonic()
        for r in self._targets(to):
            assert r.link is not None
            if r.link.buffered(index) <= STATE_BUFFER_LIMIT and r.link.send(index, frame):
                r.state.stats.on_send(now, len(frame))
                sent = True
        return sent

    async def _say_bye(self, remotes: list[Remote], reason: str) -> None:
        """Tell connected peers we go (reliable BYE), waiting briefly for it to be acked."""
        frame = wire.pack_bye(reason)
        links = []
        for r in remotes:
            if r.connected and r.link is not None and r.link.send(1, frame):
                links.append(r.link)
        deadline = time.monotonic() + BYE_LINGER
        while links and time.monotonic() < deadline:
            if all(link.flushed() for link in links):
                break
            await asyncio.sleep(0.01)

    # -- receiving ------------------------------------------------------------------------

    def _bad(self, r: Remote, index: int, why: str) -> None:
        r.state.stats.on_bad_packet()
        channels = self.config.channels
        name = repr(channels[index].name) if 0 <= index < len(channels) else f"id {index}"
        self._warn.warn(r.id, "dropped bad packet from %s on channel %s: %s", r.id, name, why)

    def _on_frame(self, r: Remote, index: int, data: bytes | str) -> None:
        now = time.monotonic()
        r.state.last_heard = now
        r.state.stats.on_receive(now, len(data))
        if isinstance(data, str):
            self._bad(r, index, "text message (netplay sends binary only)")
            return
        try:
            if index == 0:
                state = r.state.receive_fields(wire.unpack_state_fields(data), now)
                if state is not NOTHING and r.connected:
                    self._states[r.id] = state
                    self._channels[0]._deliver(r.id, state)
                return
            channel = self._channels[index]
            if not channel.config.is_reliable:
                if not data or data[0] != wire.MESSAGE:
                    raise ProtocolError("not a message frame")
                body = wire.unpack_body(memoryview(data)[1:])
            else:
                if data and data[0] in (wire.BYE, wire.ALIAS) and index == 1:
                    value = wire.unpack_body(memoryview(data)[1:])
                    if data[0] == wire.BYE:
                        r.inbox.put_nowait(("leave", "kicked" if value == "kicked" else "left"))
                    elif isinstance(value, str) and 0 < len(value) <= 64:
                        self._on_alias(r, value)
                    else:
                        raise ProtocolError("bad alias")
                    return
                done, body = r.reassemblers[index].feed(data)
                if not done:
                    return
        except ProtocolError as exc:
            self._bad(r, index, str(exc))
            return
        except Exception as exc:  # whatever a hostile packet triggers, it must not escape
            self._bad(r, index, f"{type(exc).__name__}: {exc}")
            return
        channel._deliver(r.id, body)
        self._emit(MessageReceived(r.id, channel.name, body))

    # -- link conditioner -----------------------------------------------------------------

    def _conditioner_for(self, peer_id: PeerId) -> ConditionerConfig | None:
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
        for r in self._remotes.values():
            if (peer is None or r.id == peer) and r.link is not None:
                r.link.set_conditioner(config)
