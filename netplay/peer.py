"""PeerLink: one aiortc ``RTCPeerConnection`` to one peer, for one connection attempt.

One data channel, :data:`CHANNEL_LABEL`, is created ``negotiated=True`` with ``id=0`` on both
sides (unordered, ``maxRetransmits=0``), so it exists without an in-band ``datachannel`` event
and opens when SCTP is up. netplay's lanes (every configured channel) ride inside its
datagrams (:mod:`netplay.wire`), so no lane waits behind another in SCTP's queues.
aiortc's string-named pyee events stay inside this module: the owner gets plain callbacks.

aiortc objects are not thread-safe (aiortc#903): a PeerLink must only be used from the event
loop that created it. aiortc has no ICE restart, so a failed link is replaced by a fresh
PeerLink with a higher ``attempt`` number (see :mod:`netplay.mesh`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from . import _aiortc
from .config import MeshConfig
from .protocol import AnswerPayload, CandidatePayload, OfferPayload, PeerId

if TYPE_CHECKING:
    from .conditioner import ConditionerConfig, LinkConditioner

__all__ = ["CHANNEL_LABEL", "PeerLink", "no_pair_reason"]

CHANNEL_LABEL = "netplay"
"""Label of the one data channel of a link."""

logger = logging.getLogger(__name__)

_no_pair_warned = False

_ICE_ADVICE = (
    "players on one machine: use a lobby URL on 127.0.0.1 (netplay then adds loopback "
    "candidates) or set MeshConfig.ice_host_addresses=(\"127.0.0.1\",); on a LAN: set "
    "MeshConfig.ice_host_addresses to the LAN interface (e.g. (\"eth0\",)); across the "
    "internet: give a STUN/TURN server (MeshConfig.ice_servers, or the lobby's --stun-urls / "
    "--turn-urls)"
)


def no_pair_reason(local: Sequence[str] | None, remote: Sequence[str] | None,
                   config: MeshConfig) -> str | None:
    """Why ICE could form no candidate pair from these candidate addresses, with advice;
    ``None`` when pairs existed (or negotiation never got that far)."""
    if local is None or remote is None:
        return None
    if not local:
        hosts = config.ice_host_addresses
        where = (f"on the addresses MeshConfig.ice_host_addresses={hosts!r}" if hosts
                 else "on this machine (no usable network interface)")
        return f"ICE gathered no candidates {where}; " + _ICE_ADVICE
    if not remote:
        return "the peer offered no ICE candidates (no usable network interface there); " \
            + _ICE_ADVICE
    if not {_family(a) for a in local} & {_family(a) for a in remote}:
        return (f"local candidates {sorted(set(local))} and the peer's {sorted(set(remote))} "
                "share no IP version; " + _ICE_ADVICE)
    return None


def _family(address: str) -> int:
    return 6 if ":" in address else 4


class PeerLink:
    """One peer connection attempt with its negotiated data channel.

    ``on_open()`` runs once the channel is open; ``on_frame(data)`` for each received
    datagram; ``on_bad(stream_id, why)`` for data on a stream with no channel;
    ``on_down(reason)`` once when the connection fails or closes
    under us (never after :meth:`close`).
    """

    def __init__(
        self,
        peer_id: PeerId,
        attempt: int,
        config: MeshConfig,
        ice_servers: Sequence[RTCIceServer],
        *,
        on_open: Callable[[], None],
        on_frame: Callable[[bytes | str], None],
        on_down: Callable[[str], None],
        conditioner: ConditionerConfig | None = None,
        on_bad: Callable[[int, str], None] | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.attempt = attempt
        self.config = config
        self._on_open = on_open
        self._on_down = on_down
        self.closed = False
        self.opened = False
        # iceServers is always a list: None would make aiortc fall back to a public STUN server.
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=list(ice_servers),
            iceTransportPolicy=RTCIceTransportPolicy(config.ice_transport_policy),
        ))
        self.conditioner: LinkConditioner | None = None
        if conditioner is not None:
            from .conditioner import attach

            self.conditioner = attach(self.pc, conditioner, conditioner,
                                      stream=str(attempt) if attempt else "")
        # One SCTP data channel carries every datagram (netplay's lanes ride inside them;
        # see netplay.wire): negotiated, id 0, unordered, never retransmitted by SCTP.
        self.channel: RTCDataChannel = self.pc.createDataChannel(
            CHANNEL_LABEL, ordered=False, negotiated=True, id=0, maxRetransmits=0)
        self.channel.bufferedAmountLowThreshold = 0
        self.channel.on("open", self._channel_opened)
        self.channel.on("close", self._channel_closed)
        self.channel.on("message", on_frame)
        self._drain_listeners: list[Callable[[], None]] = []
        self.channel.on("bufferedamountlow", self._drained)
        if on_bad is not None:  # data on a stream id with no channel: aiortc drops it silently
            # (and our datagrams skip pyee's emit: the channel's id is fixed at 0)
            _aiortc.guard_streams(self.pc.sctp, lambda stream, why: None if self.closed
                                  else on_bad(stream, why),
                                  direct={0: lambda data: None if self.closed else on_frame(data)})
        _aiortc.send_inline(self.pc.sctp)  # a datagram leaves in send(), not a task later
        _aiortc.tune(self.pc.sctp)  # set-up under loss: SCTP's first RTO 0.5 s, not 3 s
        # ... and DTLS's lost flights: OpenSSL waits 1 s (2 s, 4 s) before it resends one
        _aiortc.copy_handshakes(self.pc)
        self.pc.on("connectionstatechange", self._state_changed)

    def __repr__(self) -> str:
        return f"<PeerLink {self.peer_id} attempt={self.attempt} state={self.pc.connectionState}>"

    def _channel_opened(self) -> None:
        if not self.closed:
            self.opened = True
            logger.debug("link to %s (attempt %d): channel open", self.peer_id, self.attempt)
            if self.conditioner is None:  # (under a conditioner, its delays come first)
                _aiortc.receive_inline(self.pc)  # datagrams reach SCTP in aioice's callback
            self._on_open()

    def _channel_closed(self) -> None:
        self._down("channel closed")

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        logger.debug("link to %s (attempt %d): %s", self.peer_id, self.attempt, state)
        if state in ("failed", "closed"):
            self._down(f"connection {state}")

    def _down(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        logger.debug("link to %s (attempt %d) down: %s", self.peer_id, self.attempt, why)
        if not self.opened:
            self.explain_failure()
        self._on_down(why)

    def explain_failure(self) -> None:
        """When ICE had no candidate pair to try, log one WARNING per process naming the
        likely cause and the setting that fixes it (aioice itself only logs at INFO)."""
        global _no_pair_warned
        if _no_pair_warned:
            return
        why = self.no_pair()
        if why is not None:
            _no_pair_warned = True
            logger.warning("no ICE candidate pair for peer %s: %s", self.peer_id, why)

    def no_pair(self) -> str | None:
        """Why ICE had no candidate pair to try on this link (with advice), or ``None``."""
        return no_pair_reason(self._candidates(local=True), self._candidates(local=False),
                              self.config)

    def _candidates(self, *, local: bool) -> list[str] | None:
        """Addresses of the link's local or remote ICE candidates (public aiortc API);
        ``None`` before negotiation got that far."""
        sctp = self.pc.sctp
        if sctp is None:
            return None
        ice = sctp.transport.transport
        found = ice.iceGatherer.getLocalCandidates() if local else ice.getRemoteCandidates()
        return [c.ip for c in found]

    # -- negotiation ----------------------------------------------------------------------

    async def _set_local(self, description: RTCSessionDescription) -> str:
        # ICE gathering happens inside setLocalDescription; pin its host addresses here.
        addresses, add_to_defaults = self.config.host_candidate_plan()
        with _aiortc.host_addresses(addresses, add_to_defaults=add_to_defaults):
            await self.pc.setLocalDescription(description)
        return str(self.pc.localDescription.sdp)

    async def make_offer(self) -> OfferPayload:
        """Create the offer (with every ICE candidate inside the SDP)."""
        sdp = await self._set_local(await self.pc.createOffer())
        return OfferPayload(sdp=sdp, attempt=self.attempt)

    async def accept_offer(self, offer: OfferPayload) -> AnswerPayload:
        """Apply the remote offer and return our answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        sdp = await self._set_local(await self.pc.createAnswer())
        return AnswerPayload(sdp=sdp, attempt=self.attempt)

    async def accept_answer(self, answer: AnswerPayload) -> None:
        """Apply the remote answer (only valid after :meth:`make_offer`)."""
        if self.pc.signalingState != "have-local-offer":
            logger.debug("ignoring answer from %s in state %s", self.peer_id,
                         self.pc.signalingState)
            return
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

    async def add_candidate(self, payload: CandidatePayload) -> None:
        """Add a trickled candidate (browsers); an empty string ends the candidates."""
        if self.pc.remoteDescription is None:
            return
        text = payload.candidate
        if text.startswith("candidate:"):
            text = text[len("candidate:"):]
        if not text:
            await self.pc.addIceCandidate(None)
            return
        try:
            candidate = candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError):
            logger.warning("ignoring malformed ICE candidate from %s", self.peer_id)
            return
        candidate.sdpMid = payload.sdp_mid
        candidate.sdpMLineIndex = payload.sdp_mline_index
        await self.pc.addIceCandidate(candidate)

    # -- data -----------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Hand one datagram to aiortc; False when the channel isn't open."""
        channel = self.channel
        if channel.readyState != "open":
            return False
        channel.send(data)
        return True

    def buffered(self) -> int:
        """Bytes aiortc holds that SCTP has not taken yet (its congestion window is full)."""
        return int(self.channel.bufferedAmount)

    def on_drain(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever aiortc's buffer of this link empties."""
        self._drain_listeners.append(callback)

    def _drained(self) -> None:
        if not self.closed:
            for listener in self._drain_listeners:
                listener()

    def set_conditioner(self, config: ConditionerConfig | None) -> None:
        """Change (or start) the link conditioner of this connection, both directions."""
        if self.conditioner is None:
            if config is None:
                return
            from .conditioner import attach

            self.conditioner = attach(self.pc, config, config,
                                      stream=str(self.attempt) if self.attempt else "")
        else:
            self.conditioner.set(outbound=config, inbound=config)

    async def close(self) -> None:
        """Close the connection; no callback runs afterwards. Idempotent."""
        self.closed = True
        await self.pc.close()
        await _aiortc.finish_close(self.pc)  # tasks aiortc/aioice leave when closed mid-connect
        if self.conditioner is not None:
            self.conditioner.close()
        await asyncio.sleep(0)
