"""Every private aiortc/aioice detail netplay touches, and nothing else.

aiortc and aioice have no public API for what follows, so netplay reaches into them, here
only. ``pyproject.toml`` pins the versions this module is written and tested against
(``aiortc>=1.16,<1.17``, ``aioice>=0.13,<0.14``), and ``tests/test_private_hooks.py`` has a
canary per private name below, so an upgrade that renames one fails there first. At run time
each access is looked up, never assumed: when a name is missing (an unpinned aiortc or
aioice), netplay either turns that feature off and logs **one WARNING per process** naming
what is missing and what is lost, or, when the caller asked for the feature outright and
running without it would quietly do something else, raises ``RuntimeError``.

ICE host addresses (:func:`host_addresses`, :func:`validate_host_addresses`)
    ``aioice.ice.get_host_addresses`` (private module function). aioice gathers host
    candidates on every interface address except loopback, and aiortc has no setting to
    choose interfaces; ``Connection.gather_candidates`` looks the function up in
    ``aioice.ice`` each time, so it is replaced there (once, on first use) by a wrapper that
    consults a context variable set around ``setLocalDescription``: the restriction is per
    peer connection and never leaks into other aiortc users of the process.
    Missing: ``RuntimeError`` when addresses are given (``MeshConfig.ice_host_addresses``;
    candidates on other interfaces would break "loopback only" or "LAN only"); with no
    addresses nothing is needed.

Link conditioner (:func:`tap_datagrams`, used by :mod:`netplay.conditioner`)
    - ``RTCPeerConnection.__createDtlsTransport`` (name-mangled
      ``_RTCPeerConnection__createDtlsTransport``): makes each ICE + DTLS transport pair;
      wrapped on the instance so transports made later are tapped as they are made.
    - ``RTCIceTransport._send`` (instance attribute, aioice's ``Connection.send`` copied in
      ``__init__``): ``RTCDtlsTransport`` awaits ``self.transport._send(data)`` for every
      outgoing datagram; replaced on the instance.
    - ``RTCIceTransport._connection`` (the aioice ``Connection``) and its
      ``data_received(data, component)``, which aioice's ``StunProtocol`` calls for every
      incoming non-STUN datagram (DTLS, hence SCTP); replaced on the instance. STUN is not
      tapped, so connectivity checks and consent stay untouched.
    Missing: ``RuntimeError`` (an impaired link that was asked for must not silently be a
    perfect one: tests and benchmarks would measure the wrong thing).

SCTP (:func:`guard_streams`, :func:`tune`)
    - ``RTCSctpTransport._data_channel_receive`` (coroutine method, awaited through ``self``
      for every received message) and ``RTCSctpTransport._data_channels`` (dict of stream id
      to channel): wrapped on the instance so that data for a stream with no channel, and
      in-band DCEP opens, are reported as bad input instead of dropped silently / creating
      channels. Missing: WARNING, aiortc's own handling (silent drop, in-band opens accepted).
    - ``RTCSctpTransport._rto`` (RFC 4960's RTO.Initial, 3 s in aiortc, read by ``_t1_start``):
      lowered to :data:`INITIAL_RTO` so a lost INIT or COOKIE costs well under a second.
      Missing: WARNING, aiortc's 3 s.
    - ``RTCSctpTransport._update_rto`` (called through ``self`` for every RTT sample): the
      RTO it computes is kept at most :data:`MAX_RTO`; aiortc samples RTT on chunks that
      waited behind a gap and let the RTO grow past 12 s, which turned a few lost SACKs into
      a dead link (the likely cause of aiortc#1086 "Problems with ForwardTsnChunk" too).
      ``_srtt`` and ``_rttvar`` (its estimate, set by ``_update_rto``): the RTO is
      recomputed from them with a floor of :data:`MIN_RTO` instead of RFC 4960's 1 s.
      Missing: WARNING, aiortc's RTO (without them: its 1 s floor, a lost window tail
      stops a link for a second).
    - ``RTCSctpTransport._receive_sack_chunk`` (coroutine method, awaited through ``self``
      for every SACK) and ``_cwnd``: after each SACK the congestion window is raised back to
      :data:`CWND_FLOOR` if it fell below. SCTP halves it for every loss, random or not, and
      netplay keeps aiortc's queue nearly empty (so SCTP rarely sees its window "fully used"
      and seldom grows it): at 10% loss it carried about 4 packets per round trip for states,
      events and acks together. netplay paces and recovers its own data, so SCTP's window
      only needs to stay out of the way. Missing: WARNING, aiortc's window (states and events
      starved under loss).
      ``_sent_queue`` and its chunks' ``_acked`` and ``_abandoned``: the RTT sample aiortc
      takes from a SACK (its oldest chunk in flight) is skipped when that chunk was
      gap-acked or abandoned before (Karn's rule; see ``_update_rto`` above). Missing:
      WARNING, every sample is taken (those above :data:`MAX_RTO` still capped).
      ``RTCSctpTransport._update_advanced_peer_ack_point`` (plain method, called through
      ``self`` after every SACK and timeout) and ``_advanced_peer_ack_tsn``: the FORWARD
      TSN also skips chunks the peer gap-acked, when each is a whole unordered message
      (aiortc skips only abandoned ones, so the peer's cumulative ack passed one hole per
      round trip and fell behind for good at 10% loss with a transfer running). Missing:
      WARNING, aiortc's rule.
      ``RTCSctpTransport._t3_expired`` (plain method, scheduled as ``self._t3_expired``):
      when the retransmission timer fires, the window is raised to the floor at once;
      aiortc's one packet per round trip until a SACK arrived turned one more lost packet
      or SACK into another timeout. Missing: WARNING, aiortc's one-packet window after T3.
    - ``RTCSctpTransport._send_sack`` (coroutine method, awaited through ``self`` after
      every packet that needs one), ``_sack_needed``, ``_sack_misordered``,
      ``_sack_duplicates`` and ``_last_received_tsn``: in-order packets are acknowledged
      every :data:`SACK_EVERY` packets or after :data:`SACK_DELAY` (aiortc: every packet).
      ``_send_chunk`` (coroutine method, awaited through ``self`` for every chunk: aiortc
      sends one chunk per packet), ``_local_port``, ``_remote_port``,
      ``_remote_verification_tag``, the module's ``serialize_packet`` and
      ``SCTP_MAX_PACKET_LENGTH``: a held SACK rides in the next DATA packet instead of a
      packet (and DTLS record, and UDP datagram) of its own; a game sending states both ways
      then sends about one packet per state instead of two. Missing: WARNING, a SACK per
      packet (or per two packets, in packets of their own).
    - ``RTCSctpTransport._data_channel_send`` (called through ``self`` by
      ``RTCDataChannel.send``), ``_data_channel_flush`` (coroutine method),
      ``_data_channel_queue`` (deque of (channel, protocol id, payload)),
      ``_remote_max_message_size`` and ``RTCDataChannel._addBufferedAmount``: aiortc queues
      each message and starts a new task to flush the queue; netplay's datagrams are flushed
      in the ``send()`` call instead (:func:`send_inline`), which saves a task and a loop
      iteration per datagram (aiortc's send path never waits). When nothing is queued
      (``_data_channel_queue`` and ``_outbound_queue`` empty, ``_association_state``
      ``State.ESTABLISHED``), the message goes straight to ``_send`` (coroutine method), as
      the flush would send it, without the buffered-amount round trip and its
      ``bufferedamountlow`` event. With ``guard_streams(...,
      direct=...)``, binary messages on the given streams go straight to their callback,
      without pyee's ``emit``. Missing: WARNING, aiortc's task per message.
    - aioice ``Connection.data_received`` and ``Connection._queue`` (what aiortc's DTLS
      reader task awaits), ``RTCDtlsTransport._ssl``, ``_data_receiver``, ``_write_ssl``,
      ``__handshake_done``, ``__rx_bytes``, ``__rx_packets`` (name-mangled) and
      ``RTCSctpTransport._handle_data``: once the link is up, a DTLS application-data record
      that arrives while that queue is empty is decrypted and handed to SCTP in aioice's
      datagram callback (:func:`receive_inline`), as aiortc's reader would a loop iteration
      later; everything else (handshake, alerts, a record behind queued ones) takes aiortc's
      path. Missing: WARNING, aiortc's reader task per datagram.

ICE pairs (:func:`prefer_direct`, :func:`selected_pair`, :func:`ice_succeeded`)
    - aioice ``Connection.check_complete`` (called through ``self`` when a check ends),
      ``Connection._check_list``, ``Connection._check_list_done`` and
      ``CandidatePair.State``: ``check_complete`` is wrapped on the instance so that a
      relayed pair that succeeds first waits up to :data:`DIRECT_GRACE` for a direct one.
      Missing: WARNING, aioice's choice (the first pair that works, even relayed).
    - aioice ``Connection._nominated`` (component -> selected ``CandidatePair``): read for
      ``PeerStats.candidate_pair``. Missing: WARNING, the pair is reported as ``None``.

Closing (:func:`finish_close`): tasks aiortc/aioice leave running after ``pc.close()``
    - ``RTCPeerConnection.__connect`` (name-mangled ``_RTCPeerConnection__connect``), started
      as a task nobody keeps; ``RTCIceTransport._monitor``, a task started after ``start()``
      waited for the gatherer; ``RTCIceTransport._connection`` and aioice's
      ``Connection._query_consent_task``, the consent freshness task ``connect()`` starts
      when it resumes after ``close()``. See :func:`finish_close`.
    Missing: WARNING, those tasks are not cancelled (they may run on after close).
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

import aioice.ice
import ifaddr
from aiortc import RTCDataChannel, RTCPeerConnection, rtcsctptransport
from aiortc.rtcicetransport import RTCIceTransport

from .stats import CandidatePair

__all__ = [
    "DIRECT_GRACE",
    "INITIAL_RTO",
    "finish_close",
    "guard_streams",
    "receive_inline",
    "send_inline",
    "host_addresses",
    "ice_succeeded",
    "prefer_direct",
    "resolve_host_addresses",
    "selected_pair",
    "tap_datagrams",
    "tune",
    "validate_host_addresses",
]

logger = logging.getLogger(__name__)

# The private names, in one place (the canary tests read these too).
_GET_HOST_ADDRESSES = "get_host_addresses"  # aioice.ice
_CREATE_DTLS = "_RTCPeerConnection__createDtlsTransport"  # RTCPeerConnection
_ICE_SEND = "_send"  # RTCIceTransport instance
_ICE_CONNECTION = "_connection"  # RTCIceTransport instance -> aioice Connection
_DATA_RECEIVED = "data_received"  # aioice Connection
_SCTP_RECEIVE = "_data_channel_receive"  # RTCSctpTransport
_SCTP_CHANNELS = "_data_channels"  # RTCSctpTransport
_SCTP_RTO = "_rto"  # RTCSctpTransport
_SCTP_UPDATE_RTO = "_update_rto"  # RTCSctpTransport
_SCTP_RTT_ESTIMATE = ("_srtt", "_rttvar")  # RTCSctpTransport, set by _update_rto
_SCTP_SACK = "_receive_sack_chunk"  # RTCSctpTransport
_SCTP_CWND = "_cwnd"  # RTCSctpTransport
_SCTP_T3_EXPIRED = "_t3_expired"  # RTCSctpTransport, scheduled as self._t3_expired
_SCTP_SENT_QUEUE = "_sent_queue"  # RTCSctpTransport: deque of DataChunk, oldest first
_CHUNK_ACKED = "_acked"  # DataChunk: gap-acked
_CHUNK_ABANDONED = "_abandoned"  # DataChunk: given up (partial reliability)
_STALE_SAMPLE = "_netplay_stale_sample"  # netplay's own flag on the RTCSctpTransport
_SCTP_ADVANCE = "_update_advanced_peer_ack_point"  # RTCSctpTransport, called through self
_SCTP_ADVANCED_TSN = "_advanced_peer_ack_tsn"  # RTCSctpTransport: RFC 3758's point
_SCTP_SEND_SACK = "_send_sack"  # RTCSctpTransport
_SCTP_SACK_NEEDED = "_sack_needed"  # RTCSctpTransport
_SCTP_MISORDERED = "_sack_misordered"  # RTCSctpTransport
_SCTP_DUPLICATES = "_sack_duplicates"  # RTCSctpTransport
_SCTP_LAST_TSN = "_last_received_tsn"  # RTCSctpTransport
_SCTP_SEND_CHUNK = "_send_chunk"  # RTCSctpTransport
_SCTP_CHANNEL_SEND = "_data_channel_send"  # RTCSctpTransport
_SCTP_FLUSH = "_data_channel_flush"  # RTCSctpTransport
_SCTP_QUEUE = "_data_channel_queue"  # RTCSctpTransport
_SCTP_MAX_MESSAGE = "_remote_max_message_size"  # RTCSctpTransport
_CHANNEL_BUFFERED = "_addBufferedAmount"  # RTCDataChannel
_SCTP_HANDLE_DATA = "_handle_data"  # RTCSctpTransport
_SCTP_SEND = "_send"  # RTCSctpTransport
_SCTP_OUTBOUND = "_outbound_queue"  # RTCSctpTransport
_SCTP_ASSOCIATION = "_association_state"  # RTCSctpTransport
_DTLS_SSL = "_ssl"  # RTCDtlsTransport
_DTLS_RECEIVER = "_data_receiver"  # RTCDtlsTransport
_DTLS_WRITE_SSL = "_write_ssl"  # RTCDtlsTransport
_DTLS_HANDSHAKE_DONE = "_RTCDtlsTransport__handshake_done"  # RTCDtlsTransport
_DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"  # RTCDtlsTransport
_DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"  # RTCDtlsTransport
_ICE_QUEUE = "_queue"  # aioice Connection
_SCTP_PACKET_HEADER = ("_local_port", "_remote_port", "_remote_verification_tag")
_SCTP_DATA_TYPE = 0  # RFC 4960 3.2: a DATA chunk
_PC_CONNECT = "_RTCPeerConnection__connect"  # RTCPeerConnection
_ICE_MONITOR = "_monitor"  # RTCIceTransport
_CONSENT_TASK = "_query_consent_task"  # aioice Connection

_warned: set[str] = set()


def _fallback(what: str, lost: str) -> None:
    """Log once per process that ``what`` is missing and ``lost`` is what goes with it."""
    if what not in _warned:
        _warned.add(what)
        logger.warning("%s is missing (aiortc/aioice changed? netplay is tested with the "
                       "versions pinned in its pyproject.toml): netplay falls back: %s",
                       what, lost)


def _missing(what: str) -> RuntimeError:
    return RuntimeError(
        f"{what} is missing in the installed aiortc/aioice; this feature of netplay needs "
        f"the versions pinned in netplay's pyproject.toml (aiortc 1.16, aioice 0.13)"
    )


# -- ICE host addresses -------------------------------------------------------------------

_allowed: ContextVar[tuple[tuple[str, ...], bool] | None] = ContextVar("netplay_ice_hosts",
                                                                     default=None)
"""The addresses to gather on, and whether aioice's own choice is added to them."""
_original_get_host_addresses: Callable[..., list[str]] | None = None


def resolve_host_addresses(entries: Sequence[str]) -> tuple[str, ...]:
    """Turn IP addresses and interface names (``"eth0"``, ``"lo"``) into IP addresses.

    Raises ``ValueError`` for an entry that is neither an IP address nor a known interface.
    """
    resolved: list[str] = []
    adapters = None
    for entry in entries:
        try:
            resolved.append(str(ipaddress.ip_address(entry)))
            continue
        except ValueError:
            pass
        if adapters is None:
            adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
            adapters.update({a.name: a for a in adapters.values()})
        adapter = adapters.get(entry)
        if adapter is None:
            raise ValueError(
                f"ice host address {entry!r} is neither an IP address nor a network interface "
                f"(interfaces here: {', '.join(sorted(adapters))})"
            )
        for ip in adapter.ips:
            resolved.append(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return tuple(dict.fromkeys(resolved))


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    setting = _allowed.get()
    assert _original_get_host_addresses is not None
    if setting is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    allowed, with_defaults = setting
    out = list(_original_get_host_addresses(use_ipv4, use_ipv6)) if with_defaults else []
    for address in allowed:
        if address in out:
            continue
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def _install_host_hook() -> None:
    """Put :func:`_get_host_addresses` in place of aioice's; ``RuntimeError`` if it has none."""
    global _original_get_host_addresses
    current = getattr(aioice.ice, _GET_HOST_ADDRESSES, None)
    if not callable(current):
        raise _missing("aioice.ice.get_host_addresses (needed to restrict ICE host addresses, "
                       "MeshConfig.ice_host_addresses)")
    if current is not _get_host_addresses:
        _original_get_host_addresses = current
        setattr(aioice.ice, _GET_HOST_ADDRESSES, _get_host_addresses)


def validate_host_addresses(entries: Sequence[str]) -> tuple[str, ...]:
    """What a ``Mesh`` checks when it is made: :func:`resolve_host_addresses` (``ValueError``),
    and that this aioice can restrict host addresses at all (``RuntimeError`` otherwise)."""
    resolved = resolve_host_addresses(entries)
    _install_host_hook()
    return resolved


@contextmanager
def host_addresses(addresses: Sequence[str] | None, *, add_to_defaults: bool = False
                   ) -> Iterator[None]:
    """Within this block, ICE gathers host candidates only on ``addresses``.

    Wrap ``setLocalDescription`` (gathering happens inside it, in tasks that copy the caller's
    context). ``None`` keeps aioice's default (every non-loopback interface). Entries may be IP
    addresses or interface names. With ``add_to_defaults`` the addresses come on top of
    aioice's default instead of replacing it. ``RuntimeError`` when aioice lacks the private
    function.
    """
    if addresses is None:
        yield
        return
    resolved = resolve_host_addresses(addresses)
    try:
        _install_host_hook()
    except RuntimeError:
        if not add_to_defaults:
            raise
        # only the automatic loopback addition was wanted: aioice's own choice will do
        _fallback("aioice.ice.get_host_addresses", "no loopback host candidates for a "
                  "lobby on loopback (set MeshConfig.ice_host_addresses to choose them)")
        yield
        return
    token = _allowed.set((resolved, add_to_defaults))
    try:
        yield
    finally:
        _allowed.reset(token)


# -- link conditioner ---------------------------------------------------------------------

Send = Callable[[bytes], Awaitable[None]]
"""Sends one datagram on an ICE transport (what DTLS awaits)."""
Receive = Callable[[bytes, int], None]
"""Takes one received datagram and its ICE component (what aioice calls)."""
Tap = Callable[[Any, Send, Receive], tuple[Send, Receive] | None]
"""``tap(ice_transport, send, receive)`` returns replacements, or ``None`` to leave it be."""


def _datagram_path(ice_transport: Any) -> tuple[Send, Any, Receive]:
    """The ICE transport's ``_send``, its aioice connection and that one's ``data_received``."""
    send = getattr(ice_transport, _ICE_SEND, None)
    connection = getattr(ice_transport, _ICE_CONNECTION, None)
    receive = getattr(connection, _DATA_RECEIVED, None)
    if not callable(send):
        raise _missing("RTCIceTransport._send (needed by the link conditioner)")
    if connection is None or not callable(receive):
        raise _missing("RTCIceTransport._connection.data_received (needed by the link "
                       "conditioner)")
    return send, connection, receive


def _tap_transport(ice_transport: Any, tap: Tap) -> None:
    send, connection, receive = _datagram_path(ice_transport)
    replacement = tap(ice_transport, send, receive)
    if replacement is not None:
        setattr(ice_transport, _ICE_SEND, replacement[0])
        setattr(connection, _DATA_RECEIVED, replacement[1])


def tap_datagrams(pc: RTCPeerConnection, tap: Tap) -> None:
    """Route every datagram below DTLS of every ICE transport of ``pc``, now and later,
    through ``tap`` (see :data:`Tap`). ``RuntimeError`` when aiortc lacks a private detail
    (checked before anything is changed, for the transports that exist already)."""
    create = getattr(pc, _CREATE_DTLS, None)
    if not callable(create):
        raise _missing("RTCPeerConnection.__createDtlsTransport (needed by the link "
                       "conditioner)")
    existing = []
    if pc.sctp is not None:
        existing.append(pc.sctp.transport.transport)
    for transceiver in pc.getTransceivers():
        existing.append(transceiver.receiver.transport.transport)
    for ice_transport in existing:
        _datagram_path(ice_transport)

    def create_dtls_transport(*args: Any, **kwargs: Any) -> Any:
        dtls = create(*args, **kwargs)
        _tap_transport(dtls.transport, tap)
        return dtls

    for ice_transport in existing:
        _tap_transport(ice_transport, tap)
    setattr(pc, _CREATE_DTLS, create_dtls_transport)


# -- handshake copies ---------------------------------------------------------------------

HANDSHAKE_COPIES = 2
"""Each datagram of the DTLS and SCTP handshakes goes out this many times. OpenSSL resends a
lost DTLS flight only after its timer (1 s, then 2 s, 4 s: pyOpenSSL exposes no
``DTLS_set_timer_cb`` to shorten it, and aiortc no setting), so at 20% loss each way a
handshake of several flights often waited seconds. DTLS and SCTP drop the copies they already
have, and the copies stop once SCTP is up (a few kilobytes per link in all)."""
HANDSHAKE_COPY_GAP = 0.01
"""Seconds between a handshake datagram and its copy (a little apart, so one burst of loss
does not take both)."""


def copy_handshakes(pc: RTCPeerConnection) -> None:
    """Send every datagram of ``pc``'s DTLS and SCTP handshakes :data:`HANDSHAKE_COPIES` times
    (see there). Call it after any link conditioner is attached, so that each copy meets the
    conditioner on its own. ``RuntimeError`` when aiortc lacks the private details of
    :func:`tap_datagrams`."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def done() -> bool:
        sctp = pc.sctp
        return sctp is not None and sctp.state in ("connected", "closed")

    def tap(ice_transport: Any, send: Send, receive: Receive) -> tuple[Send, Receive]:
        async def send_copies(data: bytes) -> None:
            await send(data)
            if done():  # handshakes over: later datagrams skip this wrapper
                if getattr(ice_transport, _ICE_SEND, None) is send_copies:
                    setattr(ice_transport, _ICE_SEND, send)
                return
            for i in range(1, HANDSHAKE_COPIES):
                loop.call_later(HANDSHAKE_COPY_GAP * i, copy, data)

        def copy(data: bytes) -> None:
            if done() or pc.connectionState in ("closed", "failed"):
                return
            task = asyncio.ensure_future(send(data))
            pending.add(task)
            task.add_done_callback(_forget_copy(pending))

        return send_copies, receive

    tap_datagrams(pc, tap)


def _forget_copy(pending: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def forget(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("a handshake copy was not sent: %s", task.exception())
    return forget


# -- SCTP ---------------------------------------------------------------------------------

INITIAL_RTO = 0.5
"""Seconds: SCTP's first retransmission timeout during association set-up (aiortc: 3 s)."""
CWND_FLOOR = 32 * 1024
"""Bytes: SCTP's congestion window is kept at least this big (about 28 packets in flight).
Measured at about 10% loss each way and a 200 ms round trip, with 30 Hz states and 100
events/s: aiortc's own window let 67% of the states through and events took 577 ms at p99;
with a 16 KiB floor 90% and 156 ms (raw aiortc's states: 90%); a 1 MiB transfer at 5% loss
and 50 ms one way took 9 s instead of 25 s (raw aiortc: 16.6 s). A bigger window once let
aiortc fill it with chunks that waited for FORWARD TSNs (96 KiB: a 500 events/s stream
stalled for seconds); since the FORWARD TSN skips what the peer received
(:func:`_forward_past_received`), 32 KiB keeps states from waiting behind a transfer's
window: state staleness p99 at 50 ms/5% with 1 MiB in flight 120-130 ms, against
159-170 ms with 16 KiB (small events on the same link: 150 ms against 125-135 ms)."""
MAX_RTO = 1.0
"""Seconds: the longest SCTP retransmission timeout (RFC 4960's RTO.Min). Only the T3 timer
uses it (netplay sends nothing SCTP retransmits; on expiry SCTP abandons what is in flight,
which still arrives if it was not lost). aiortc
measures RTT on a chunk that was gap-acked long before the cumulative ack reached it, which
let its RTO grow past 12 s under loss; with the last SACKs lost and the window full, nothing
then moved until that timer fired, and the link was declared dead first. RTT samples above
it are taken as this value (they cannot move the RTO past it anyway)."""
MIN_RTO = 0.2
"""Seconds: the shortest SCTP retransmission timeout once the association is up (aiortc:
RFC 4960's RTO.Min of 1 s; Linux TCP's floor is 200 ms). Below it SCTP's own estimate,
SRTT + 4 RTTVAR, is used as is. When the tail of a full window is lost (a burst of loss
while a transfer runs), no later packet reports it missing and nothing moves until T3
fires: states and events then stopped for a whole second. RFC 4960's floor guards against
spurious retransmissions; netplay has SCTP retransmit nothing, so a T3 that fires early
only abandons chunks that still arrive."""
SACK_EVERY = 2
"""SCTP acknowledges every second packet that arrives in order (RFC 4960 6.2's delayed ack:
"at least every second packet"); aiortc acknowledges every packet. A SACK costs both ends a
DTLS record and a UDP packet, as much as the datagram it acknowledges. netplay's own acks
ride in its datagrams; SCTP's only keep its window moving, which every second packet does."""
SACK_DELAY = 0.1
"""Seconds: the longest an in-order packet waits for its SACK (RFC 4960 allows 200 ms). Above
a 30 Hz game's 33 ms between datagrams, so its SACKs really halve."""
WEBRTC_DCEP = 50
"""SCTP payload protocol id of the data channel establishment protocol (RFC 8832)."""
WEBRTC_BINARY = 53
"""SCTP payload protocol id of a non-empty binary message (RFC 8831 8)."""
DATA_CHANNEL_OPEN = 3
SCTP_COMMON_HEADER = 12
"""Bytes: the SCTP common header in front of a packet's chunks (RFC 4960 3.1)."""


class _Done:
    """An awaitable that is already done: what aiortc awaits for a message the guard dropped
    or handed to its callback (no coroutine object per message)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        # an exhausted iterator: ``await`` takes its StopIteration (None) at once
        return cast(Generator[Any, Any, None], iter(()))


_DONE = _Done()


def guard_streams(sctp: Any, on_bad: Callable[[int, str], None],
                  direct: dict[int, Callable[[bytes], None]] | None = None) -> bool:
    """Report SCTP data that aiortc would drop silently, and refuse in-band channel opens.

    netplay creates every channel ``negotiated=True`` with a fixed id, so a peer sending on a
    stream id we have no channel for (a peer configured differently, or a hostile one) is bad
    input, and so is an in-band DCEP open (netplay never sends one; a peer could create
    channels in us at will). ``sctp._data_channel_receive`` is wrapped on this instance: both
    cases are dropped and reported to ``on_bad(stream_id, why)``. ``direct`` maps stream
    ids to a callback that takes their binary messages instead of the channel's ``message``
    event (pyee's ``emit`` costs more than the rest of the hand-over). False (one WARNING per
    process) when aiortc lacks the private method or channel table; ``direct`` messages are
    then emitted as usual.
    """
    original = getattr(sctp, _SCTP_RECEIVE, None)
    channels = getattr(sctp, _SCTP_CHANNELS, None)
    if not callable(original) or not isinstance(channels, dict):
        _fallback("RTCSctpTransport._data_channel_receive / _data_channels",
                  "data on unknown SCTP streams is dropped without being counted as bad "
                  "input, and in-band data channel opens are accepted")
        return False
    if getattr(original, "_netplay", False):
        return True

    # A plain function handing back aiortc's own coroutine (aiortc awaits the result), so the
    # hot path of every received message gains a few checks but no extra coroutine.
    to = direct if direct is not None else {}

    def receive(stream_id: int, pp_id: int, data: bytes) -> Awaitable[None]:
        if pp_id == WEBRTC_BINARY:
            callback = to.get(stream_id)
            if callback is not None and stream_id in channels:
                callback(data)
                return _DONE
        if pp_id == WEBRTC_DCEP:
            if data and data[0] == DATA_CHANNEL_OPEN:
                on_bad(stream_id, "in-band channel open (netplay negotiates its channels)")
                return _DONE
            if stream_id not in channels:
                on_bad(stream_id, f"channel control message for unknown channel id {stream_id}")
                return _DONE
        elif stream_id not in channels:
            on_bad(stream_id, f"data on unknown channel id {stream_id} ({len(data)} bytes; "
                              f"is the peer configured with more channels?)")
            return _DONE
        return original(stream_id, pp_id, data)  # type: ignore[no-any-return]

    receive._netplay = True  # type: ignore[attr-defined]
    setattr(sctp, _SCTP_RECEIVE, receive)
    return True


_finishing: set[asyncio.Future[Any]] = set()
"""Tasks finishing what :func:`drive` started (held here: the loop keeps only weak refs)."""
_UNSET = object()


class _Resume(collections.abc.Coroutine[Any, Any, Any]):
    """A coroutine that :func:`drive` started, and that then waited, as a task's coroutine:
    the task's first step gets what the coroutine yielded (so the task waits on the same
    future, or one loop iteration for a bare ``yield``); after that every step, and a
    cancellation even before the first step, goes to the coroutine itself."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def send(self, value: Any) -> Any:
        if self.first is not _UNSET:
            first, self.first = self.first, _UNSET
            return first
        return self.coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self.first = _UNSET
        return self.coro.throw(typ if val is None else val)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None  # (a task steps it through send/throw; awaiting it works too)
        while True:
            try:
                yielded = self.send(value)
            except StopIteration as stop:
                return stop.value
            value = yield yielded


def drive(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` now, in this call, as far as it goes without waiting; if it waits, a task
    finishes it. Errors are logged, as aiortc's own flush task would leave them."""
    try:
        first = coro.send(None)
    except StopIteration:
        return
    except ConnectionError as exc:  # the transport closed under us: the message is lost
        logger.debug("aiortc send failed: %s", exc)
        return
    except Exception:
        logger.exception("aiortc send failed")
        return
    task = asyncio.ensure_future(_Resume(coro, first))
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


def send_inline(sctp: Any) -> bool:
    """Make ``sctp`` flush a binary data channel message in the ``send()`` call (aiortc
    queues it and starts a task per message to flush the queue, which runs a loop iteration
    later). The queue, its order and SCTP's congestion window are aiortc's as before: a
    message that does not fit waits in the queue for aiortc's own flush after a SACK. False
    (one WARNING per process) when aiortc lacks a name it needs."""
    original: Any = getattr(sctp, _SCTP_CHANNEL_SEND, None)
    if getattr(original, "_netplay", False):
        return True
    flush: Any = getattr(sctp, _SCTP_FLUSH, None)
    send_now: Any = getattr(sctp, _SCTP_SEND, None)
    established = getattr(getattr(type(sctp), "State", None), "ESTABLISHED", None)
    if not (callable(original) and inspect.iscoroutinefunction(flush)
            and inspect.iscoroutinefunction(send_now) and established is not None
            and isinstance(getattr(sctp, _SCTP_QUEUE, None), collections.deque)
            and isinstance(getattr(sctp, _SCTP_OUTBOUND, None), collections.deque)
            and hasattr(sctp, _SCTP_MAX_MESSAGE) and hasattr(sctp, _SCTP_ASSOCIATION)
            and callable(getattr(RTCDataChannel, _CHANNEL_BUFFERED, None))):
        _fallback("RTCSctpTransport._data_channel_send/_data_channel_flush/_send/"
                  "_data_channel_queue/_outbound_queue/_association_state/State/"
                  "_remote_max_message_size, RTCDataChannel._addBufferedAmount",
                  "a task and a loop iteration per message sent (more CPU and latency)")
        return False

    def send(channel: Any, data: bytes | str) -> None:
        if type(data) is not bytes or not data:
            return original(channel, data)  # type: ignore[no-any-return]
        limit = getattr(sctp, _SCTP_MAX_MESSAGE)
        if limit and len(data) > limit:
            return original(channel, data)  # type: ignore[no-any-return]  # aiortc's error
        queue = getattr(sctp, _SCTP_QUEUE)
        stream_id = channel.id
        if not queue and not getattr(sctp, _SCTP_OUTBOUND) and stream_id is not None \
                and channel.maxPacketLifeTime is None \
                and getattr(sctp, _SCTP_ASSOCIATION) is established:
            # what the flush would do with this one message, minus the buffered amount
            drive(send_now(stream_id, WEBRTC_BINARY, data, expiry=None,
                           max_retransmits=channel.maxRetransmits, ordered=channel.ordered))
            return None
        getattr(channel, _CHANNEL_BUFFERED)(len(data))
        queue.append((channel, WEBRTC_BINARY, data))
        drive(flush())
        return None

    send._netplay = True  # type: ignore[attr-defined]
    setattr(sctp, _SCTP_CHANNEL_SEND, send)
    return True


DTLS_APPLICATION_DATA = 23
"""Content type of a DTLS record that carries application data (RFC 6347 4.1)."""


def receive_inline(pc: RTCPeerConnection) -> bool:
    """Hand ``pc``'s DTLS application data to SCTP in aioice's datagram callback.

    aiortc's DTLS transport reads each datagram in a task from aioice's queue: one queue
    hand-over, future and task step per datagram, a loop iteration after it arrived. Called
    once the link is up (its data channel open), this decrypts an application-data record
    that arrives while the queue is empty at once, and runs SCTP's handling of it in the same
    call (:func:`drive`). Handshake records, alerts and anything that arrives while the
    reader task has datagrams queued go through the queue as before, so order is kept and
    DTLS's own shutdown is aiortc's. An error in SCTP's handling is logged and the link
    goes on (aiortc's reader would close it). Install it before a link conditioner taps the
    link, or not at all: a conditioner installed first would be bypassed. False (one
    WARNING per process) when aiortc or aioice lacks a name it needs.
    """
    from OpenSSL import SSL

    sctp: Any = pc.sctp
    dtls: Any = getattr(sctp, "transport", None)
    connection = getattr(getattr(dtls, "transport", None), _ICE_CONNECTION, None)
    original: Any = getattr(connection, _DATA_RECEIVED, None)
    if getattr(original, "_netplay_inline", False):
        return True
    queue = getattr(connection, _ICE_QUEUE, None)
    ssl = getattr(dtls, _DTLS_SSL, None)
    write_ssl: Any = getattr(dtls, _DTLS_WRITE_SSL, None)
    handle: Any = getattr(sctp, _SCTP_HANDLE_DATA, None)
    if not (callable(original) and isinstance(queue, asyncio.Queue) and ssl is not None
            and inspect.iscoroutinefunction(write_ssl) and inspect.iscoroutinefunction(handle)
            and getattr(dtls, _DTLS_RECEIVER, None) is sctp
            and all(hasattr(dtls, name) for name in (_DTLS_HANDSHAKE_DONE, _DTLS_RX_BYTES,
                                                     _DTLS_RX_PACKETS))):
        _fallback("aioice Connection.data_received/_queue, RTCDtlsTransport._ssl/"
                  "_data_receiver/_write_ssl/__handshake_done/__rx_bytes/__rx_packets, "
                  "RTCSctpTransport._handle_data",
                  "a task step and a loop iteration per datagram received (more CPU and "
                  "latency)")
        return False

    def data_received(data: bytes, component: int) -> None:
        if not data or data[0] != DTLS_APPLICATION_DATA or not queue.empty() \
                or dtls.state != "connected" or not getattr(dtls, _DTLS_HANDSHAKE_DONE):
            original(data, component)
            return
        # what RTCDtlsTransport._recv_next does with a DTLS record
        setattr(dtls, _DTLS_RX_BYTES, getattr(dtls, _DTLS_RX_BYTES) + len(data))
        setattr(dtls, _DTLS_RX_PACKETS, getattr(dtls, _DTLS_RX_PACKETS) + 1)
        ssl.bio_write(data)
        plain: bytes | None
        try:
            plain = ssl.recv(1500)
        except SSL.ZeroReturnError:
            plain = None
        except SSL.Error:
            plain = b""
        drive(write_ssl())
        if plain is None:  # the peer shut DTLS down: end the reader task, as it would have
            queue.put_nowait(None)  # ended on this record
        elif plain:
            drive(handle(plain))

    data_received._netplay_inline = True  # type: ignore[attr-defined]
    setattr(connection, _DATA_RECEIVED, data_received)
    return True


def tune(sctp: Any) -> bool:
    """Tune one SCTP transport for netplay: lower its initial RTO to :data:`INITIAL_RTO`
    (aiortc: RFC 4960's 3 s), so a lost INIT or COOKIE under heavy loss costs well under a
    second of set-up, keep every later RTO between :data:`MIN_RTO` and :data:`MAX_RTO`, its
    congestion window at least :data:`CWND_FLOOR` after every SACK and every retransmission
    timeout (see the module docstring), acknowledge every second packet
    (:data:`SACK_EVERY`), and let FORWARD TSNs skip what the peer already received
    (:func:`_forward_past_received`). False (one WARNING per process and missing name) when
    aiortc lacks what a part needs; that part is then left as aiortc runs it.
    """
    ok = True
    rto = getattr(sctp, _SCTP_RTO, None)
    if isinstance(rto, int | float):
        setattr(sctp, _SCTP_RTO, min(rto, INITIAL_RTO))
    else:
        _fallback("RTCSctpTransport._rto",
                  "SCTP's initial retransmission timeout stays aiortc's 3 s (slower set-up "
                  "under loss)")
        ok = False
    bounded = _bound_rto(sctp)
    floored = _floor_cwnd(sctp)
    delayed = _delay_sacks(sctp)
    skipping = _forward_past_received(sctp)
    return bounded and floored and delayed and skipping and ok


def _delay_sacks(sctp: Any) -> bool:
    """Make ``sctp`` acknowledge in-order packets every :data:`SACK_EVERY` packets or after
    :data:`SACK_DELAY`, whichever comes first, and let a held SACK ride in the next DATA packet
    ``sctp`` sends (RFC 4960 6.5's bundling: the SACK chunk first, one packet, one DTLS
    record); gaps and duplicates are still acknowledged at once (fast retransmit and FORWARD
    TSN rely on them)."""
    send_sack: Any = getattr(sctp, _SCTP_SEND_SACK, None)
    if getattr(send_sack, "_netplay", False):
        return True
    send_chunk: Any = getattr(sctp, _SCTP_SEND_CHUNK, None)
    if not (inspect.iscoroutinefunction(send_sack) and hasattr(sctp, _SCTP_SACK_NEEDED)
            and hasattr(sctp, _SCTP_MISORDERED) and hasattr(sctp, _SCTP_DUPLICATES)
            and hasattr(sctp, _SCTP_LAST_TSN)):
        _fallback("RTCSctpTransport._send_sack/_sack_needed/_sack_misordered/"
                  "_sack_duplicates/_last_received_tsn",
                  "SCTP acknowledges every packet (more CPU per datagram)")
        return False
    bundle = inspect.iscoroutinefunction(send_chunk) and _bundling_supported(sctp)
    held = 0
    acked_tsn: int | None = None  # the cumulative TSN of the last packet counted
    timer: asyncio.TimerHandle | None = None
    flushing: set[asyncio.Task[None]] = set()
    captured: list[Any] | None = None  # while bundling: the SACK chunk aiortc built

    def release() -> None:
        nonlocal held, timer
        held = 0
        if timer is not None:
            timer.cancel()
            timer = None

    async def send_held() -> None:
        nonlocal held
        held = 0
        if getattr(sctp, _SCTP_SACK_NEEDED) and sctp.state == "connected":
            await send_sack()

    def on_timer() -> None:
        nonlocal timer
        timer = None
        if held:
            task = asyncio.ensure_future(send_held())
            flushing.add(task)
            task.add_done_callback(flushing.discard)

    async def delayed_send_sack() -> None:
        nonlocal held, timer, acked_tsn
        urgent = bool(getattr(sctp, _SCTP_MISORDERED) or getattr(sctp, _SCTP_DUPLICATES)) \
            or sctp.state != "connected"
        tsn = getattr(sctp, _SCTP_LAST_TSN)
        if not urgent and tsn == acked_tsn and held:
            return  # a packet with no new data (the peer's SACK): keep holding ours
        acked_tsn = tsn
        if urgent or held + 1 >= SACK_EVERY:
            release()
            await send_sack()
            return
        held += 1  # _sack_needed stays set: our next DATA packet, the next packet in, or
        if timer is None:  # the timer sends it
            timer = asyncio.get_running_loop().call_later(SACK_DELAY, on_timer)

    async def bundling_send_chunk(chunk: Any) -> None:
        nonlocal captured
        if captured is not None:  # aiortc's _send_sack, called below, hands us its SACK
            captured.append(chunk)
            return
        if not (held and getattr(chunk, "type", None) == _SCTP_DATA_TYPE
                and getattr(sctp, _SCTP_SACK_NEEDED) and sctp.state == "connected"):
            await send_chunk(chunk)
            return
        release()
        captured = []
        try:
            await send_sack()  # builds the SACK, clears _sack_needed and the duplicates
        finally:
            sack, captured = captured, None
        chunks = [*sack, chunk]
        packet = _serialize_packet(sctp, chunks)
        if packet is None:  # too big for one packet: the SACK goes first, on its own
            for one in chunks:
                await send_chunk(one)
            return
        await sctp.transport._send_data(packet)

    delayed_send_sack._netplay = True  # type: ignore[attr-defined]
    setattr(sctp, _SCTP_SEND_SACK, delayed_send_sack)
    if bundle:
        bundling_send_chunk._netplay = True  # type: ignore[attr-defined]
        setattr(sctp, _SCTP_SEND_CHUNK, bundling_send_chunk)
    else:
        _fallback("RTCSctpTransport._send_chunk/_local_port/_remote_port/"
                  "_remote_verification_tag, rtcsctptransport.serialize_packet",
                  "SACKs go in packets of their own instead of riding in DATA packets")
    return bundle


def _bundling_supported(sctp: Any) -> bool:
    return all(hasattr(sctp, name) for name in _SCTP_PACKET_HEADER) \
        and callable(getattr(rtcsctptransport, "serialize_packet", None)) \
        and isinstance(getattr(rtcsctptransport, "SCTP_MAX_PACKET_LENGTH", None), int) \
        and hasattr(getattr(sctp, "transport", None), "_send_data")


class _Chunks:
    """Several SCTP chunks where aiortc's ``serialize_packet`` expects one (its ``bytes()``
    is theirs in order; each chunk pads itself to 4 bytes)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


def _serialize_packet(sctp: Any, chunks: list[Any]) -> bytes | None:
    """One SCTP packet holding ``chunks``, or None when they exceed aiortc's packet size."""
    data = b"".join(bytes(chunk) for chunk in chunks)
    if SCTP_COMMON_HEADER + len(data) > rtcsctptransport.SCTP_MAX_PACKET_LENGTH:
        return None
    local, remote, tag = (getattr(sctp, name) for name in _SCTP_PACKET_HEADER)
    chunk: Any = _Chunks(data)
    packet: bytes = rtcsctptransport.serialize_packet(local, remote, tag, chunk)
    return packet


def _raise_cwnd(sctp: Any) -> None:
    if getattr(sctp, _SCTP_CWND) < CWND_FLOOR:
        setattr(sctp, _SCTP_CWND, CWND_FLOOR)


def _floor_cwnd(sctp: Any) -> bool:
    """Keep ``sctp``'s congestion window at least :data:`CWND_FLOOR` after every SACK."""
    receive_sack = getattr(sctp, _SCTP_SACK, None)
    if getattr(receive_sack, "_netplay", False):
        return True
    if not (inspect.iscoroutinefunction(receive_sack) and hasattr(sctp, _SCTP_CWND)):
        _fallback("RTCSctpTransport._receive_sack_chunk/_cwnd",
                  "SCTP's congestion window collapses under random loss (a few packets per "
                  "round trip for everything)")
        return False

    async def floored_receive_sack(chunk: Any) -> None:
        # Karn's rule for the RTT sample aiortc may take from this SACK (the oldest chunk in
        # flight): not when it was gap-acked or abandoned earlier, since it then waited for
        # a hole, not a round trip (see _bound_rto)
        queue = getattr(sctp, _SCTP_SENT_QUEUE, None)
        head = queue[0] if queue else None
        setattr(sctp, _STALE_SAMPLE, head is not None and (
            getattr(head, _CHUNK_ACKED, False) or getattr(head, _CHUNK_ABANDONED, False)))
        try:
            await receive_sack(chunk)
        finally:
            setattr(sctp, _STALE_SAMPLE, False)
        _raise_cwnd(sctp)

    floored_receive_sack._netplay = True  # type: ignore[attr-defined]
    setattr(sctp, _SCTP_SACK, floored_receive_sack)
    karn = isinstance(getattr(sctp, _SCTP_SENT_QUEUE, None), collections.deque)
    if not karn:
        _fallback("RTCSctpTransport._sent_queue",
                  "SCTP's RTT samples include time spent waiting behind a hole (its "
                  "retransmission timeout stays near the 1 s ceiling under loss)")
    t3_expired = getattr(sctp, _SCTP_T3_EXPIRED, None)
    if t3_expired is None or inspect.iscoroutinefunction(t3_expired):
        _fallback("RTCSctpTransport._t3_expired",
                  "after SCTP's retransmission timer fires, one packet per round trip moves "
                  "until a SACK arrives (one lost packet or SACK: another timeout)")
        return False

    def floored_t3_expired() -> None:
        t3_expired()  # schedules _transmit, which runs after this returns
        _raise_cwnd(sctp)

    setattr(sctp, _SCTP_T3_EXPIRED, floored_t3_expired)
    return karn


_WHOLE_UNORDERED = (rtcsctptransport.SCTP_DATA_UNORDERED | rtcsctptransport.SCTP_DATA_FIRST_FRAG
                    | rtcsctptransport.SCTP_DATA_LAST_FRAG)


def _forward_past_received(sctp: Any) -> bool:
    """Let ``sctp``'s FORWARD TSN skip chunks the peer already acknowledged in a gap block
    too, not only abandoned ones, when each is a whole unordered message.

    aiortc follows RFC 3758 C2 to the letter: the Advanced.Peer.Ack.Point moves only over
    abandoned chunks, so a gap-acked chunk right after a lost one stops it, and the peer's
    cumulative ack passes one hole per round trip. With a transfer in flight at 10% loss
    or more, holes come faster than that: the queue of chunks waiting for the cumulative
    ack grew to thousands, each SACK walked all of it, and states waited behind the
    window. The letter of the RFC protects a receiver that reneges on gap-acked data;
    aiortc never does, and a lost netplay datagram is netplay's to recover. Chunks of a
    split or ordered message are left to aiortc's rule (skipping one fragment would make
    the peer drop its half-assembled message)."""
    update: Any = getattr(sctp, _SCTP_ADVANCE, None)
    if getattr(update, "_netplay", False):
        return True
    if not (callable(update) and not inspect.iscoroutinefunction(update)
            and isinstance(getattr(sctp, _SCTP_SENT_QUEUE, None), collections.deque)
            and isinstance(getattr(sctp, _SCTP_ADVANCED_TSN, None), int)):
        _fallback("RTCSctpTransport._update_advanced_peer_ack_point/_advanced_peer_ack_tsn/"
                  "_sent_queue",
                  "under 10% loss or more with a transfer, SCTP's cumulative ack falls "
                  "behind for good (queues of thousands of chunks, states held back)")
        return False
    queue: collections.deque[Any] = getattr(sctp, _SCTP_SENT_QUEUE)

    def advance() -> None:
        update()
        while queue:
            head = queue[0]
            if not getattr(head, _CHUNK_ACKED, False) \
                    or head.flags & _WHOLE_UNORDERED != _WHOLE_UNORDERED:
                return
            queue.popleft()  # already out of the flight size (gap-acked)
            setattr(sctp, _SCTP_ADVANCED_TSN, head.tsn)
            update()  # the abandoned chunks after it, and the FORWARD TSN chunk

    advance._netplay = True  # type: ignore[attr-defined]
    setattr(sctp, _SCTP_ADVANCE, advance)
    return True


def _bound_rto(sctp: Any) -> bool:
    """Keep ``sctp``'s RTO between :data:`MIN_RTO` and :data:`MAX_RTO` whenever aiortc
    updates it (SRTT + 4 RTTVAR in between, as aiortc computes it)."""
    update_rto = getattr(sctp, _SCTP_UPDATE_RTO, None)
    if getattr(update_rto, "_netplay", False):
        return True
    if update_rto is None or inspect.iscoroutinefunction(update_rto):
        _fallback("RTCSctpTransport._update_rto",
                  "SCTP's retransmission timeout can grow to many seconds under loss (stalls)")
        return False

    estimate = all(hasattr(sctp, name) for name in _SCTP_RTT_ESTIMATE)
    if not estimate:
        _fallback("RTCSctpTransport._srtt/_rttvar",
                  "SCTP's retransmission timeout keeps RFC 4960's 1 s floor (a window tail "
                  "lost in a burst stops the link for a second)")

    def bounded_update_rto(rtt: float) -> None:
        # aiortc samples chunks that were gap-acked or abandoned long before the cumulative
        # ack reached them; under 20% loss such samples drove SRTT past 11 s (and kept the
        # RTO at the ceiling for seconds after). The SACK hook flags them (_floor_cwnd);
        # any other sample above the ceiling can only say "the ceiling".
        if getattr(sctp, _STALE_SAMPLE, False):
            return
        update_rto(min(rtt, MAX_RTO))
        srtt, rttvar = (getattr(sctp, name, None) for name in _SCTP_RTT_ESTIMATE)
        if isinstance(srtt, float | int) and isinstance(rttvar, float | int):
            setattr(sctp, _SCTP_RTO, min(MAX_RTO, max(MIN_RTO, srtt + 4 * rttvar)))
        elif getattr(sctp, _SCTP_RTO) > MAX_RTO:
            setattr(sctp, _SCTP_RTO, MAX_RTO)

    bounded_update_rto._netplay = True  # type: ignore[attr-defined]
    setattr(sctp, _SCTP_UPDATE_RTO, bounded_update_rto)
    return estimate


# -- closing ------------------------------------------------------------------------------

def _qualname(owner: type, name: str, lost: str) -> str | None:
    method = getattr(owner, name, None)
    if not inspect.iscoroutinefunction(method):
        _fallback(f"{owner.__name__}.{name.replace(f'_{owner.__name__}', '')}", lost)
        return None
    return str(method.__qualname__)


def _leftover_tasks(pc: Any) -> list[asyncio.Task[Any]]:
    lost = "tasks it leaves after a close in the middle of connecting are not cancelled"
    connect = _qualname(RTCPeerConnection, _PC_CONNECT, f"RTCPeerConnection: {lost}")
    monitor = _qualname(RTCIceTransport, _ICE_MONITOR, f"RTCIceTransport: {lost}")
    sctp = pc.sctp
    ice = getattr(getattr(sctp, "transport", None), "transport", None)
    tasks = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if task.done() or frame is None:
            continue
        name = getattr(coro, "__qualname__", None)
        owner = frame.f_locals.get("self")
        if (name == connect and connect is not None and owner is pc) or (
                name == monitor and monitor is not None and owner is ice
                and getattr(ice, "state", None) == "closed"):
            tasks.append(task)
    if ice is not None:
        connection = getattr(ice, _ICE_CONNECTION, None)
        if connection is None or not hasattr(connection, _CONSENT_TASK):
            _fallback("RTCIceTransport._connection._query_consent_task",
                      f"aioice's consent freshness task: {lost}")
        else:
            consent = getattr(connection, _CONSENT_TASK)
            if isinstance(consent, asyncio.Task) and not consent.done():
                tasks.append(consent)
    return tasks


async def finish_close(pc: RTCPeerConnection) -> None:
    """Cancel and await what a closed ``pc`` left running (aiortc/aioice leak tasks).

    ``RTCPeerConnection.setRemoteDescription`` starts ``__connect()`` as a task nobody keeps.
    If the connection is closed while aioice's ``Connection.connect()`` waits for its check
    list and the checks already succeeded, ``connect()`` resumes after ``close()`` and starts
    the consent freshness task (``query_consent``), which then runs for good on closed
    sockets: a mesh closed in the middle of a connection attempt left two tasks running (seen
    over 40 s). Likewise ``RTCIceTransport.start()`` creates its ``_monitor`` task after
    waiting for the gatherer; when ``stop()`` ran during that wait, the monitor is created
    afterwards and waits for good on a closed connection (seen on a loaded machine). So after
    ``pc.close()`` this cancels the connection's leftover ``__connect`` tasks, any consent
    task and the monitor task of a closed ICE transport, and waits for them.
    """
    for _ in range(2):  # again: connect() may have started a consent task meanwhile
        tasks = _leftover_tasks(pc)
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- ICE: the selected pair, and direct pairs before relayed ones --------------------------

DIRECT_GRACE = 1.0
"""Seconds a relayed candidate pair that succeeded waits, unselected, while a direct pair is
still being checked; the first direct pair to succeed in that time wins. aioice selects the
first pair whose check succeeds (aggressive nomination), and behind port-restricted NATs a
direct check only gets through once the other side's check has opened its NAT, usually at
aioice's first STUN retransmission (0.5 s): the relay, whose checks pass at once, won 3 of 20
cone-to-cone pairs in a 4-player mesh (bench/nat.py with no wait). With the wait the direct
pair won 0.42-0.44 s after the relay succeeded, and no cone-to-cone pair was relayed in 20
rounds. Only pairs that would be relayed wait: a relay-only link (symmetric NATs) opens up to
this much later, nothing else does."""

_ICE_NOMINATED = "_nominated"  # aioice Connection: component -> selected CandidatePair
_ICE_CHECK_COMPLETE = "check_complete"  # aioice Connection method, called through self
_ICE_CHECK_LIST = "_check_list"  # aioice Connection
_ICE_CHECK_LIST_DONE = "_check_list_done"  # aioice Connection


def _ice_connection(pc: RTCPeerConnection) -> Any:
    """The aioice ``Connection`` under ``pc``'s data channel, or ``None``."""
    ice = getattr(getattr(pc.sctp, "transport", None), "transport", None)
    return getattr(ice, _ICE_CONNECTION, None)


def _relayed(pair: Any) -> bool:
    return "relay" in (pair.local_candidate.type, pair.remote_candidate.type)


class _DirectFirst:
    """State of :func:`prefer_direct` on one aioice connection."""

    def __init__(self, connection: Any, check_complete: Callable[[Any], None]) -> None:
        self.connection = connection
        self.original = check_complete
        self.held: dict[int, Any] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.since: dict[int, float] = {}
        self.succeeded = False
        """Some candidate pair's check succeeded (a path exists, relayed or not)."""

    def _direct_pending(self, component: int) -> bool:
        state = aioice.ice.CandidatePair.State
        return any(p.component == component and not _relayed(p)
                   and p.state in (state.FROZEN, state.WAITING, state.IN_PROGRESS)
                   for p in getattr(self.connection, _ICE_CHECK_LIST))

    def _release(self, component: int) -> None:
        pair = self.held.pop(component, None)
        timer = self.timers.pop(component, None)
        if timer is not None:
            timer.cancel()
        if pair is not None and not getattr(self.connection, _ICE_CHECK_LIST_DONE):
            logger.debug("ICE: no direct pair succeeded: selecting relayed %s", pair)
            self.original(pair)

    def check_complete(self, pair: Any) -> None:
        component = pair.component
        state = aioice.ice.CandidatePair.State
        succeeded = pair.state == state.SUCCEEDED
        self.succeeded = self.succeeded or succeeded
        if succeeded and pair.nominated and _relayed(pair) \
                and self._direct_pending(component):
            pair.task = None  # what the original does first; the check is over
            if component not in self.held:
                self.held[component] = pair
                self.since[component] = asyncio.get_running_loop().time()
                self.timers[component] = asyncio.get_running_loop().call_later(
                    DIRECT_GRACE, self._release, component)
                logger.debug("ICE: relayed %s waits for a direct pair", pair)
            return
        if succeeded and pair.nominated:  # a direct pair (or nothing direct pending): it wins
            if self.held.pop(component, None) is not None:
                logger.debug("ICE: direct %s won over a relayed pair after %.3f s", pair,
                             asyncio.get_running_loop().time() - self.since[component])
            timer = self.timers.pop(component, None)
            if timer is not None:
                timer.cancel()
        elif component in self.held and not self._direct_pending(component):
            self._release(component)  # every direct check failed: the relay after all
        self.original(pair)


def prefer_direct(pc: RTCPeerConnection) -> bool:
    """Make ``pc``'s ICE select a direct candidate pair over a relayed one that succeeded
    first, when a direct check succeeds within :data:`DIRECT_GRACE` (see there). Call after
    the data channel is created, before the descriptions are set. False (and one WARNING)
    when aioice lacks what this needs: then the first pair that succeeds wins, as in aioice.

    aioice: ``Connection.check_complete`` (replaced on the instance; called through ``self``
    by ``check_start`` and ``check_incoming``), ``_check_list``, ``_check_list_done``,
    ``CandidatePair.State``.
    """
    connection = _ice_connection(pc)
    check_complete = getattr(connection, _ICE_CHECK_COMPLETE, None)
    if isinstance(getattr(check_complete, "__self__", None), _DirectFirst):
        return True
    if not (callable(check_complete)
            and isinstance(getattr(connection, _ICE_CHECK_LIST, None), list)
            and hasattr(connection, _ICE_CHECK_LIST_DONE)
            and hasattr(getattr(aioice.ice, "CandidatePair", None), "State")):
        _fallback("aioice Connection.check_complete/_check_list",
                  "ICE selects the first candidate pair that works, even a relayed one when "
                  "a direct one would have worked a moment later")
        return False
    state = _DirectFirst(connection, check_complete)
    setattr(connection, _ICE_CHECK_COMPLETE, state.check_complete)
    return True


def ice_succeeded(pc: RTCPeerConnection) -> bool | None:
    """Whether any candidate pair of ``pc`` passed its connectivity check (a path exists);
    ``None`` when unknown (:func:`prefer_direct` was not installed)."""
    hook = getattr(_ice_connection(pc), _ICE_CHECK_COMPLETE, None)
    state = getattr(hook, "__self__", None)
    return state.succeeded if isinstance(state, _DirectFirst) else None


def selected_pair(pc: RTCPeerConnection) -> CandidatePair | None:
    """The candidate pair ``pc``'s ICE selected, or ``None`` before one is (or when aioice
    lacks ``Connection._nominated``: one WARNING)."""
    connection = _ice_connection(pc)
    if connection is None:
        return None
    nominated = getattr(connection, _ICE_NOMINATED, None)
    if not isinstance(nominated, dict):
        _fallback("aioice Connection._nominated",
                  "PeerStats.candidate_pair stays None (the selected pair is unknown)")
        return None
    pair = nominated.get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return CandidatePair(local.type, (local.host, local.port),
                         remote.type, (remote.host, remote.port))
