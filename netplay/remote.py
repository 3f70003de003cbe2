"""One other member of the lobby: its record and the task that keeps a link to it up.

Every remote peer gets one supervisor task (:func:`supervise`) that owns its
:class:`~netplay.peer.PeerLink` and handles, strictly one at a time, what the lobby and the link
report through the remote's ``inbox``:

- ``("signal", payload)``: an offer, answer or candidate relayed by the lobby;
- ``("open", attempt)`` / ``("down", attempt, why)``: from the link (stale attempts ignored);
  ``PeerJoined`` itself is reported at once, inside the channel-open callback, so it always
  precedes the peer's first message;
- ``("leave", reason)``: the peer left the lobby or said goodbye on the events channel;
- ``("lobby_back",)``: the lobby connection came back: an offer or answer of a link that has
  not opened is sent again (the lobby may have lost it with the old connection).

The earlier-joined member offers (:func:`netplay.protocol.offers_to`), so two offers never
cross. A link that fails is replaced by a fresh ``RTCPeerConnection`` and a new offer with a
higher attempt number (aiortc has no ICE restart), at most ``reconnect_attempts`` times in a
row, and only while the lobby is reachable. ``PeerJoined`` is reported when a link opens;
``PeerLeft`` once when it goes away, or once when no link could ever be made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _aiortc
from ._unpack import UnpackLimits
from .config import DEFAULT_CHANNELS
from .congestion import Pacer
from .errors import ChannelClosed, SignalingError
from .events import LeaveReason, MessagesUndelivered, PeerJoined, PeerLeft
from .lanes import Inbound, Outbound, lane_specs
from .peer import PeerLink
from .protocol import AnswerPayload, CandidatePayload, OfferPayload, PeerId, Signal
from .state import PeerState

if TYPE_CHECKING:
    from .mesh import Mesh

__all__ = ["Remote", "supervise"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Remote:
    """Everything this session knows about one other member."""

    id: PeerId
    name: str
    offerer: bool
    """True when we send the offers to this peer."""
    state: PeerState
    inbox: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    link: PeerLink | None = None
    connected: bool = False
    """A link is open (PeerJoined was reported and no PeerLeft since)."""
    ever_reported: bool = False
    done: bool = False
    """The supervisor gave up or the peer left; the record only waits for the lobby to drop it."""
    task: asyncio.Task[None] | None = None
    outbound: Outbound = field(default_factory=lambda: Outbound(lane_specs(DEFAULT_CHANNELS)))
    """Our lanes to this peer: kept across link rebuilds (record ids survive a re-offer)."""
    inbound: Inbound = field(default_factory=lambda: Inbound(lane_specs(DEFAULT_CHANNELS),
                                                             UnpackLimits()))
    """This peer's lanes to us: kept across link rebuilds (duplicates are still dropped)."""
    pacer: Pacer = field(default_factory=Pacer)
    flush_handle: asyncio.Handle | None = None
    pump_handle: asyncio.Handle | None = None
    """A scheduled :meth:`DataPlane._pump` (now, or when the pacer or a resend is due)."""
    pump_at: float = 0.0
    feedback_due: bool = False
    """A snapshot arrived and no datagram went back since (its ack is due)."""
    was_connected: bool = False
    """A link was open once: sends to it are queued while it reconnects."""
    lobby_id: PeerId = ""
    """The id the lobby knows this peer by now (differs from ``id`` after a lobby restart)."""
    last_signal: OfferPayload | AnswerPayload | None = None
    """Our latest offer or answer, sent again when the lobby comes back before its link
    opened (the lobby may have lost it: a NAT remap breaks the lobby connection too)."""
    failure: str = ""
    """Why no link could be made (``PeerLeft.detail``), once the supervisor gave up."""

    def __post_init__(self) -> None:
        self.lobby_id = self.lobby_id or self.id


async def _new_link(mesh: Mesh, r: Remote, attempt: int) -> PeerLink:
    def post(*item: Any) -> Callable[..., None]:
        def put(*args: Any) -> None:
            r.inbox.put_nowait((*item, *args))
        return put

    link = PeerLink(
        r.id, attempt, mesh.config, mesh._rtc_ice_servers(),
        on_open=lambda: _opened(mesh, r, attempt),
        on_frame=lambda data: mesh._on_frame(r, data),
        on_down=post("down", attempt),
        conditioner=mesh._conditioner_for(r.id),
        on_bad=lambda index, why: mesh._bad(r, index, why),
    )
    _aiortc.prefer_direct(link.pc)  # a direct path over a relayed one that answered first
    r.link = link
    link.on_drain(lambda: mesh._kick(r))
    return link


def _opened(mesh: Mesh, r: Remote, attempt: int) -> None:
    # Runs inside aiortc's channel-open callback, before aiortc can hand us any frame from this
    # link, so PeerJoined always precedes the peer's first MessageReceived. (Through the inbox,
    # the supervisor would report it one loop iteration later, after frames that arrived in
    # the same batch.) The supervisor still gets "open" to reset its deadline and failures.
    link = r.link
    if link is None or link.attempt != attempt or r.connected:
        return
    r.connected = r.ever_reported = True
    r.state.last_heard = time.monotonic()
    r.was_connected = True
    pair = r.state.stats.candidate_pair = _aiortc.selected_pair(link.pc)
    logger.info("peer %s (%s) connected (attempt %d) over %s", r.id, r.name, attempt,
                pair or "an unknown candidate pair")
    mesh._peer_joined(r, PeerJoined(r.id, r.name))
    r.outbound.resend_all()  # what was in flight on an earlier link goes again (deduplicated)
    mesh._kick(r)
    r.inbox.put_nowait(("open", attempt))


async def _drop_link(r: Remote) -> None:
    link, r.link = r.link, None
    r.state.stats.candidate_pair = None
    for name in ("flush_handle", "pump_handle"):
        handle = getattr(r, name)
        if handle is not None:
            handle.cancel()
            setattr(r, name, None)
    if link is not None:
        await link.close()


async def _send_signal(mesh: Mesh, r: Remote, payload: Any) -> None:
    if isinstance(payload, OfferPayload | AnswerPayload):
        r.last_signal = payload
    try:
        await mesh._lobby_client().send(Signal(to=r.lobby_id, payload=payload))
    except (SignalingError, ChannelClosed) as exc:
        # ChannelClosed: our mesh is closing while this link was (re)connecting.
        logger.debug("signal to %s not sent: %s", r.id, exc)


async def _offer(mesh: Mesh, r: Remote, attempt: int) -> None:
    link = await _new_link(mesh, r, attempt)
    offer = await link.make_offer()
    logger.debug("offer to %s (attempt %d)", r.id, attempt)
    await _send_signal(mesh, r, offer)


def _lost(mesh: Mesh, r: Remote, reason: LeaveReason) -> None:
    if r.connected:
        r.connected = False
        logger.info("peer %s (%s) left: %s", r.id, r.name, reason)
        mesh._peer_lost(r, PeerLeft(r.id, reason))


async def _handle_signal(mesh: Mesh, r: Remote, payload: Any) -> bool:
    """Apply a relayed signal; True when it started a new connection attempt."""
    link = r.link
    if isinstance(payload, OfferPayload):
        if r.offerer:
            logger.debug("ignoring offer from %s: we offer to it", r.id)
            return False
        if link is not None and link.attempt >= payload.attempt and not link.closed:
            logger.debug("ignoring repeated offer %d from %s", payload.attempt, r.id)
            return False
        if link is not None:
            _lost(mesh, r, "connection_failed")
            await _drop_link(r)
        link = await _new_link(mesh, r, payload.attempt)
        answer = await link.accept_offer(payload)
        await _send_signal(mesh, r, answer)
        return True
    if link is None or link.attempt != payload.attempt:
        logger.debug("ignoring %s for attempt %d from %s", payload.kind, payload.attempt, r.id)
        return False
    if isinstance(payload, AnswerPayload):
        await link.accept_answer(payload)
    elif isinstance(payload, CandidatePayload):
        await link.add_candidate(payload)
    return False


NO_ROUTE = ("no ICE candidate pair worked and neither player has a TURN relay candidate: "
            "their NATs (likely symmetric) let only a relay through, so a TURN server is "
            "needed (give the lobby TURN settings; see docs/nat.md)")
"""``PeerLeft.detail`` when a connection attempt failed for want of a relay."""
NO_RELAY = ("no ICE candidate pair worked and neither player got a TURN relay candidate "
            "although TURN is configured: the TURN server is unreachable or refused the "
            "credentials (see docs/nat.md)")
"""``PeerLeft.detail`` when TURN is configured but gave neither player a relay candidate."""


def _unreachable(mesh: Mesh, link: PeerLink | None) -> str | None:
    """Why trying again cannot help, or ``None``: the offer and answer were exchanged, ICE
    checked every pair until the deadline and none answered, and neither side has a relay
    candidate. Another attempt would check the same dead pairs."""
    pc = link.pc if link is not None else None
    if pc is None or pc.localDescription is None or pc.remoteDescription is None:
        return None
    if _aiortc.ice_succeeded(pc) is not False:
        return None
    if " typ relay" in pc.localDescription.sdp + pc.remoteDescription.sdp:
        return None
    turn = any(url.startswith(("turn:", "turns:"))
               for server in mesh._rtc_ice_servers() for url in server.urls)
    return NO_RELAY if turn else NO_ROUTE


def _give_up(mesh: Mesh, r: Remote, detail: str) -> None:
    r.failure = detail
    if not r.ever_reported:
        r.ever_reported = True
        mesh._peer_lost(r, PeerLeft(r.id, "connection_failed", detail))


async def supervise(mesh: Mesh, r: Remote) -> None:
    """Keep a link to ``r`` up until it leaves, we give up, or the task is cancelled."""
    config = mesh.config
    failures = 0
    attempt = 0
    try:
        if r.offerer:
            await _offer(mesh, r, attempt)
        deadline: float | None = time.monotonic() + config.connect_timeout
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    item = await r.inbox.get()
            except TimeoutError:
                item = ("timeout",)
            kind = item[0]
            if kind == "leave":
                _lost(mesh, r, item[1])
                return
            if kind == "signal":
                try:
                    if await _handle_signal(mesh, r, item[1]):
                        attempt = item[1].attempt
                        deadline = time.monotonic() + config.connect_timeout
                except Exception as exc:  # a malformed SDP must not kill the supervisor
                    logger.warning("bad signal from %s: %s", r.id, exc)
                continue
            link = r.link
            if kind == "lobby_back":
                last = r.last_signal
                if link is not None and not link.opened and not link.closed \
                        and last is not None and last.attempt == link.attempt:
                    logger.debug("lobby back: %s to %s again", last.kind, r.id)
                    await _send_signal(mesh, r, last)
                continue
            if kind != "timeout" and (link is None or item[1] != link.attempt):
                continue  # from an attempt we already abandoned
            if kind == "open":  # already reported by _opened
                failures = 0
                deadline = None
                continue
            # "down" from the link, or no link opened before the deadline
            why = item[2] if kind == "down" else "connect timeout"
            reason: LeaveReason = "timed_out" if why == "timed_out" else "connection_failed"
            logger.info("link to %s (attempt %d) failed: %s", r.id, attempt, why)
            hopeless = _unreachable(mesh, link)
            _lost(mesh, r, reason)
            await _drop_link(r)
            failures += 1
            if hopeless is not None:
                logger.warning("cannot connect to peer %s (%s): %s", r.id, r.name, hopeless)
                _give_up(mesh, r, hopeless)
                return
            if failures > config.reconnect_attempts:
                break
            await mesh._wait_lobby_connected()
            if r.offerer:
                attempt += 1
                await _offer(mesh, r, attempt)
            deadline = time.monotonic() + config.connect_timeout
        logger.info("giving up on peer %s (%s) after %d failed attempts", r.id, r.name, failures)
        _give_up(mesh, r, f"no link after {failures} attempts (the last: {why})")
    except Exception:
        if mesh._is_open():
            logger.exception("link to %s failed unexpectedly", r.id)
        else:  # the mesh closed under a link that was still connecting: nothing to report
            logger.debug("link to %s stopped by close", r.id, exc_info=True)
        _lost(mesh, r, "connection_failed")
        _give_up(mesh, r, "internal error (logged)")
    finally:
        r.done = True
        with contextlib.suppress(Exception):
            await _drop_link(r)
        lost = r.outbound.undelivered - r.outbound.pending(0)  # the game's, not our control
        if lost and mesh._is_open():
            logger.warning("%d reliable message(s) to %s were never delivered", lost, r.id)
            mesh._emit(MessagesUndelivered(r.id, lost))
