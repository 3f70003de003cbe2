"""PeerLink: one aiortc ``RTCPeerConnection`` to one peer, for one connection attempt.

Every configured channel is created ``negotiated=True`` with ``id=index`` on both sides, so the
channels exist without an in-band ``datachannel`` event and open together when SCTP is up.
aiortc's string-named pyee events stay inside this module: the owner gets plain callbacks.

aiortc objects are not thread-safe (aiortc#903): a PeerLink must only be used from the event
loop that created it. aiortc has no ICE restart, so a failed link is replaced by a fresh
PeerLink with a higher ``attempt`` number (see :mod:`netplay.mesh`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from . import _closing, _ice, _sctp
from .config import MeshConfig
from .protocol import AnswerPayload, CandidatePayload, OfferPayload, PeerId

if TYPE_CHECKING:
    from .conditioner import ConditionerConfig, LinkConditioner

__all__ = ["PeerLink"]

logger = logging.getLogger(__name__)


class PeerLink:
    """One peer connection attempt with its negotiated channels.

    ``on_open()`` runs once every channel is open; ``on_frame(index, data)`` for each
    received message; ``on_bad(stream_id, why)`` for data on a stream with no channel;
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
        on_frame: Callable[[int, bytes | str], None],
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

            self.conditioner = attach(self.pc, conditioner, conditioner)
        self.channels: list[RTCDataChannel] = []
        self._ack_listeners: list[Callable[[], None]] = []
        self._open_count = 0
        for index, channel in enumerate(config.channels):
            dc = self.pc.createDataChannel(
                channel.name, ordered=channel.ordered, negotiated=True, id=index,
                maxRetransmits=channel.max_retransmits,
                maxPacketLifeTime=channel.max_packet_life_time,
            )
            dc.on("open", self._channel_opened)
            dc.on("close", self._channel_closed)
            dc.on("message", self._make_receiver(index, on_frame))
            self.channels.append(dc)
        if on_bad is not None:  # data on a stream id with no channel: aiortc drops it silently
            _sctp.guard_streams(self.pc.sctp, lambda stream, why: None if self.closed
                                else on_bad(stream, why))
        self.pc.on("connectionstatechange", self._state_changed)

    def __repr__(self) -> str:
        return f"<PeerLink {self.peer_id} attempt={self.attempt} state={self.pc.connectionState}>"

    @staticmethod
    def _make_receiver(index: int, on_frame: Callable[[int, bytes | str], None]
                       ) -> Callable[[bytes | str], None]:
        def receive(data: bytes | str) -> None:
            on_frame(index, data)
        return receive

    def _channel_opened(self) -> None:
        self._open_count += 1
        if self._open_count == len(self.channels) and not self.closed:
            self.opened = True
            logger.debug("link to %s (attempt %d): channels open", self.peer_id, self.attempt)
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
        self._on_down(why)

    # -- negotiation ----------------------------------------------------------------------

    async def _set_local(self, description: RTCSessionDescription) -> str:
        # ICE gathering happens inside setLocalDescription; pin its host addresses here.
        with _ice.host_addresses(self.config.ice_host_addresses):
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

    def send(self, index: int, data: bytes) -> bool:
        """Hand one message to aiortc; False when the channel isn't open."""
        dc = self.channels[index]
        if dc.readyState != "open":
            return False
        dc.send(data)
        return True

    def buffered(self, index: int) -> int:
        """Bytes queued in aiortc for this channel and not yet handed to SCTP."""
        return int(self.channels[index].bufferedAmount)

    def on_acked(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every SCTP SACK is processed (room opened in the window).

        aiortc has no public event for this: we wrap the SCTP transport's private
        ``_receive_sack_chunk`` on this instance only (aiortc is pinned). Without it, callers
        fall back to polling.
        """
        self._ack_listeners.append(callback)
        sctp = self.pc.sctp
        original = getattr(sctp, "_receive_sack_chunk", None)
        if original is None or getattr(original, "_netplay", False):
            return
        listeners = self._ack_listeners

        async def receive_sack(chunk: Any) -> None:
            await original(chunk)
            for listener in listeners:
                listener()

        receive_sack._netplay = True  # type: ignore[attr-defined]
        sctp._receive_sack_chunk = receive_sack  # type: ignore[method-assign,union-attr]

    def in_flight_age(self, index: int) -> float:
        """Seconds since the oldest unacknowledged message of this channel left for the
        network (0.0 when none); see :func:`netplay._sctp.in_flight_age`."""
        sctp = self.pc.sctp
        return 0.0 if sctp is None else _sctp.in_flight_age(sctp, index, time.time())

    def reliable_room(self, index: int) -> int:
        """Bytes that may be handed to aiortc now without queueing behind the congestion
        window: 0 while SCTP still has anything queued, else the free part of its window.

        Reads private ``RTCSctpTransport`` fields (``_data_channel_queue``, ``_outbound_queue``,
        ``_cwnd``, ``_flight_size``; aiortc is pinned); without them, falls back to allowing
        ``reliable_buffer_limit`` bytes in the channel's ``bufferedAmount``.
        """
        dc = self.channels[index]
        if dc.readyState != "open":
            return 0
        sctp = self.pc.sctp
        try:
            if sctp._data_channel_queue or sctp._outbound_queue:  # type: ignore[union-attr]
                return 0
            return int(sctp._cwnd - sctp._flight_size)  # type: ignore[union-attr]
        except AttributeError:
            return self.config.reliable_buffer_limit - int(dc.bufferedAmount)

    def flushed(self) -> bool:
        """True when nothing sent is still queued or unacknowledged in SCTP."""
        sctp = self.pc.sctp
        if sctp is None:
            return True
        # private aiortc queues: there is no public "all acked" signal
        return not (getattr(sctp, "_data_channel_queue", None)
                    or getattr(sctp, "_outbound_queue", None)
                    or getattr(sctp, "_sent_queue", None))

    def set_conditioner(self, config: ConditionerConfig | None) -> None:
        """Change (or start) the link conditioner of this connection, both directions."""
        if self.conditioner is None:
            if config is None:
                return
            from .conditioner import attach

            self.conditioner = attach(self.pc, config, config)
        else:
            self.conditioner.set(outbound=config, inbound=config)

    def sctp_stats(self) -> dict[str, Any]:
        """A few SCTP figures (for debugging and stats): smoothed RTT and retransmits."""
        sctp = self.pc.sctp
        if sctp is None:
            return {}
        return {"srtt": getattr(sctp, "_srtt", None)}

    async def close(self) -> None:
        """Close the connection; no callback runs afterwards. Idempotent."""
        self.closed = True
        await self.pc.close()
        await _closing.finish_close(self.pc)  # tasks aiortc/aioice leave when closed mid-connect
        if self.conditioner is not None:
            self.conditioner.close()
        await asyncio.sleep(0)
