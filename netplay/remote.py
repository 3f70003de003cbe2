"""One other member of the lobby: its record and the task that keeps a link to it up.

Every remote peer gets one supervisor task (:func:`supervise`) that owns its
:class:`~netplay.peer.PeerLink` and handles, strictly one at a time, the messages that the
lobby, the data plane and the link post to the remote's ``inbox``:

- :class:`Signal`: an offer, answer or candidate relayed by the lobby;
- :class:`LinkOpen` / :class:`LinkDown`: from the link, or "timed_out" from the data plane's
  silence check (messages about attempts already abandoned are ignored); ``PeerJoined``
  itself is reported at once, inside the channel-open callback, so it always precedes the
  peer's first message;
- :class:`Leave`: the peer left the lobby or said goodbye;
- :class:`LobbyBack`: the lobby connection came back: an offer or answer of a link that has
  not opened is sent again (the lobby may have lost it with the old connection).

The supervisor sees its session only through :class:`LinkOwner` (as matchbox hands its
handshake a ``SignalPeer``: an id plus a sender), never the whole ``Mesh``.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

from . import _aiortc
from .congestion import Pacer
from .events import LeaveReason
from .lanes import Inbound, Outbound
from .peer import PeerLink
from .protocol import AnswerPayload, CandidatePayload, OfferPayload, PeerId, SignalPayload
from .state import PeerState

if TYPE_CHECKING:
    from aiortc import RTCIceServer

    from .conditioner import ConditionerConfig
    from .config import MeshConfig

__all__ = ["NO_RELAY", "NO_ROUTE", "Inbox", "Leave", "LinkDown", "LinkOpen", "LinkOwner",
           "LobbyBack", "Remote", "Signal", "supervise"]

logger = logging.getLogger(__name__)


# -- supervisor messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signal:
    """An offer, answer or candidate the lobby relayed from the peer."""

    payload: SignalPayload


@dataclass(frozen=True, slots=True)
class LinkOpen:
    """Connection attempt ``attempt`` opened its data channel."""

    attempt: int


@dataclass(frozen=True, slots=True)
class LinkDown:
    """Connection attempt ``attempt`` failed or closed (``why``: "timed_out" when the data
    plane heard nothing for ``disconnect_timeout``)."""

    attempt: int
    why: str


@dataclass(frozen=True, slots=True)
class Leave:
    """The peer left the lobby, was kicked, or said goodbye on the link."""

    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class LobbyBack:
    """The lobby connection came back (a signal sent as it went away may be lost)."""


Message: TypeAlias = Signal | LinkOpen | LinkDown | Leave | LobbyBack
Inbox: TypeAlias = "asyncio.Queue[Message]"


# -- the record ---------------------------------------------------------------------------


@dataclass(eq=False)
class Remote:
    """Everything this session knows about one other member."""

    id: PeerId
    name: str | None
    """Display name; ``None`` until the lobby has told us (a signal may come first)."""
    offerer: bool
    """True when we send the offers to this peer."""
    state: PeerState
    outbound: Outbound
    """Our lanes to this peer: kept across link rebuilds (record ids survive a re-offer)."""
    inbound: Inbound
    """This peer's lanes to us: kept across link rebuilds (duplicates are still dropped)."""
    pacer: Pacer = field(default_factory=Pacer)
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    link: PeerLink | None = None
    connected: bool = False
    """A link is open (PeerJoined was reported and no PeerLeft since)."""
    ever_reported: bool = False
    done: bool = False
    """The supervisor gave up or the peer left; the record only waits for the lobby to drop it."""
    task: asyncio.Task[None] | None = None
    flush_handle: asyncio.Handle | None = None
    pump_handle: asyncio.Handle | None = None
    """A scheduled pump of the data plane (now, or when the pacer or a resend is due)."""
    pump_at: float = 0.0
    wants_drain: bool = False
    """A pump stopped because aiortc held data: the next drain of its buffer kicks one."""
    ack_at: float | None = None
    """When our acks (of records, or feedback on its snapshots) must go to this peer; ``None``
    when every datagram it sent since our last one has been acknowledged."""
    unacked_datagrams: int = 0
    """Datagrams with records received from this peer since our last ack went out."""
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

    @property
    def label(self) -> str:
        """The name to show: the display name, or the id while the name is unknown."""
        return self.name if self.name is not None else self.id


# -- what the supervisor needs from its session -------------------------------------------


class LinkOwner(Protocol):
    """The session as a supervisor sees it: configuration, the lobby as a signal path, and
    the data plane's hooks for a link's frames and fate."""

    @property
    def config(self) -> MeshConfig: ...

    def ice_servers(self) -> list[RTCIceServer]:
        """STUN/TURN servers for a new connection."""
        ...

    def conditioner_for(self, peer: PeerId) -> ConditionerConfig | None:
        """The link conditioner for a new connection to ``peer``."""
        ...

    async def signal(self, r: Remote, payload: SignalPayload) -> None:
        """Relay ``payload`` to ``r`` through the lobby (dropped when that is impossible)."""
        ...

    async def lobby_ready(self) -> None:
        """Return once the lobby is reachable (a re-offer needs it)."""
        ...

    def is_open(self) -> bool:
        """False once the session is closing."""
        ...

    def on_frame(self, r: Remote, data: bytes | str) -> None:
        """A datagram arrived from ``r``."""
        ...

    def on_bad(self, r: Remote, stream: int, why: str) -> None:
        """Bad input arrived from ``r`` below the datagram layer."""
        ...

    def kick(self, r: Remote) -> None:
        """Something may be sendable to ``r`` now."""
        ...

    def joined(self, r: Remote) -> None:
        """``r``'s link opened: report ``PeerJoined``."""
        ...

    def lost(self, r: Remote, reason: LeaveReason, detail: str = "") -> None:
        """``r`` is gone for now: report ``PeerLeft`` (``detail``: why, for people)."""
        ...

    def undelivered(self, r: Remote, count: int) -> None:
        """``r`` is gone for good with ``count`` reliable messages never acknowledged."""
        ...


# -- the supervisor -----------------------------------------------------------------------


def _new_link(owner: LinkOwner, r: Remote, attempt: int) -> PeerLink:
    link = PeerLink(
        r.id, attempt, owner.config, owner.ice_servers(),
        on_open=lambda: _opened(owner, r, attempt),
        on_frame=lambda data: owner.on_frame(r, data),
        on_down=lambda why: r.inbox.put_nowait(LinkDown(attempt, why)),
        conditioner=owner.conditioner_for(r.id),
        on_bad=lambda index, why: owner.on_bad(r, index, why),
    )
    _aiortc.prefer_direct(link.pc)  # a direct path over a relayed one that answered first
    r.link = link
    link.on_drain(lambda: _drained(owner, r))
    return link


def _drained(owner: LinkOwner, r: Remote) -> None:
    """aiortc's buffer emptied (after every datagram): pump only if a pump waited for it."""
    if r.wants_drain:
        r.wants_drain = False
        owner.kick(r)


def _opened(owner: LinkOwner, r: Remote, attempt: int) -> None:
    # Runs inside aiortc's channel-open callback, before aiortc can hand us any frame from this
    # link, so PeerJoined always precedes the peer's first MessageReceived. (Through the inbox,
    # the supervisor would report it one loop iteration later, after frames that arrived in
    # the same batch.) The supervisor still gets LinkOpen to reset its deadline and failures.
    link = r.link
    if link is None or link.attempt != attempt or r.connected:
        return
    r.connected = r.ever_reported = True
    r.state.last_heard = time.monotonic()
    r.was_connected = True
    pair = r.state.stats.candidate_pair = _aiortc.selected_pair(link.pc)
    logger.info("peer %s (%s) connected (attempt %d) over %s", r.id, r.label, attempt,
                pair or "an unknown candidate pair")
    owner.joined(r)
    r.outbound.resend_all()  # what was in flight on an earlier link goes again (deduplicated)
    owner.kick(r)
    r.inbox.put_nowait(LinkOpen(attempt))


async def _drop_link(r: Remote) -> None:
    link, r.link = r.link, None
    r.state.stats.candidate_pair = None
    for handle in (r.flush_handle, r.pump_handle):
        if handle is not None:
            handle.cancel()
    r.flush_handle = r.pump_handle = None
    if link is not None:
        await link.close()


async def _offer(owner: LinkOwner, r: Remote, attempt: int) -> None:
    link = _new_link(owner, r, attempt)
    offer = await link.make_offer()
    logger.debug("offer to %s (attempt %d)", r.id, attempt)
    await _signal(owner, r, offer)


async def _signal(owner: LinkOwner, r: Remote, payload: SignalPayload) -> None:
    if isinstance(payload, OfferPayload | AnswerPayload):
        r.last_signal = payload
    await owner.signal(r, payload)


def _lost(owner: LinkOwner, r: Remote, reason: LeaveReason) -> None:
    if r.connected:
        r.connected = False
        logger.info("peer %s (%s) left: %s", r.id, r.label, reason)
        owner.lost(r, reason)


async def _handle_signal(owner: LinkOwner, r: Remote, payload: SignalPayload) -> bool:
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
            _lost(owner, r, "connection_failed")
            await _drop_link(r)
        link = _new_link(owner, r, payload.attempt)
        answer = await link.accept_offer(payload)
        await _signal(owner, r, answer)
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


def _unreachable(owner: LinkOwner, link: PeerLink | None) -> str | None:
    """Why trying again cannot help, or ``None``: the offer and answer were exchanged, ICE
    checked every pair until the deadline and none answered, and neither side has a relay
    candidate. Another attempt would check the same dead pairs."""
    pc = link.pc if link is not None else None
    if link is None or pc is None or pc.localDescription is None \
            or pc.remoteDescription is None:
        return None
    no_pair = link.no_pair()
    if no_pair is not None:  # not even a pair to check: a NAT is not the problem
        return no_pair
    if _aiortc.ice_succeeded(pc) is not False:
        return None
    if " typ relay" in pc.localDescription.sdp + pc.remoteDescription.sdp:
        return None
    turn = any(url.startswith(("turn:", "turns:"))
               for server in owner.ice_servers() for url in server.urls)
    return NO_RELAY if turn else NO_ROUTE


def _give_up(owner: LinkOwner, r: Remote, detail: str) -> None:
    r.failure = detail
    if not r.ever_reported:
        r.ever_reported = True
        owner.lost(r, "connection_failed", detail)


async def _next(r: Remote, deadline: float | None) -> Message | None:
    """The next inbox message, or ``None`` when ``deadline`` (monotonic) passed first."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        async with asyncio.timeout(timeout):
            return await r.inbox.get()
    except TimeoutError:
        return None


async def supervise(owner: LinkOwner, r: Remote) -> None:
    """Keep a link to ``r`` up until it leaves, we give up, or the task is cancelled."""
    config = owner.config
    failures = 0
    attempt = 0
    try:
        if r.offerer:
            await _offer(owner, r, attempt)
        deadline: float | None = time.monotonic() + config.connect_timeout
        while True:
            message = await _next(r, deadline)
            link = r.link
            match message:
                case Leave(left):
                    _lost(owner, r, left)
                    return
                case Signal(payload):
                    try:
                        if await _handle_signal(owner, r, payload):
                            attempt = payload.attempt
                            deadline = time.monotonic() + config.connect_timeout
                    except Exception as exc:  # a malformed SDP must not kill the supervisor
                        logger.warning("bad signal from %s: %s", r.id, exc)
                    continue
                case LinkOpen(opened) if link is not None and opened == link.attempt:
                    failures = 0  # PeerJoined was already reported by _opened
                    deadline = None
                    continue
                case LobbyBack():
                    last = r.last_signal
                    if link is not None and not link.opened and not link.closed \
                            and last is not None and last.attempt == link.attempt:
                        logger.debug("lobby back: %s to %s again", last.kind, r.id)
                        await _signal(owner, r, last)
                    continue
                case LinkDown(down, why) if link is not None and down == link.attempt:
                    pass
                case None:
                    why = "connect timeout"  # no link opened before the deadline
                case _:
                    continue  # about an attempt we already abandoned
            reason: LeaveReason = "timed_out" if why == "timed_out" else "connection_failed"
            logger.info("link to %s (attempt %d) failed: %s", r.id, attempt, why)
            if link is not None and not link.opened:
                link.explain_failure()  # one WARNING when ICE had no pair to try
            hopeless = _unreachable(owner, link)
            _lost(owner, r, reason)
            await _drop_link(r)
            failures += 1
            if hopeless is not None:
                logger.warning("cannot connect to peer %s (%s): %s", r.id, r.label, hopeless)
                _give_up(owner, r, hopeless)
                return
            if failures > config.reconnect_attempts:
                break
            await owner.lobby_ready()
            if r.offerer:
                attempt += 1
                await _offer(owner, r, attempt)
            deadline = time.monotonic() + config.connect_timeout
        logger.info("giving up on peer %s (%s) after %d failed attempts", r.id, r.label,
                    failures)
        _give_up(owner, r, f"no link after {failures} attempts (the last: {why})")
    except Exception:
        if owner.is_open():
            logger.exception("link to %s failed unexpectedly", r.id)
        else:  # the session closed under a link that was still connecting: nothing to report
            logger.debug("link to %s stopped by close", r.id, exc_info=True)
        _lost(owner, r, "connection_failed")
        _give_up(owner, r, "internal error (logged)")
    finally:
        r.done = True
        with contextlib.suppress(Exception):
            await _drop_link(r)
        lost = r.outbound.undelivered - r.outbound.pending(0)  # the game's, not our control
        if lost and owner.is_open():
            owner.undelivered(r, lost)
