"""Canaries for every private aiortc/aioice detail :mod:`netplay._aiortc` uses, and its fallbacks.

aiortc and aioice are pinned in pyproject.toml. If an upgrade renames one of these details,
netplay loses a feature (loopback-only ICE, the link conditioner, the SCTP stream guard, the
fast SCTP set-up, clean shutdown); one canary per detail names it, so the upgrade fails here.
The canaries read the names from ``netplay._aiortc`` itself: they check what it looks up.

The fallback tests simulate a missing detail (a stand-in object, or the looked-up name
monkeypatched to one that does not exist): the feature turns off with exactly one WARNING
per process, or, where running without it would quietly do something else, a clear
``RuntimeError``. No network is mocked; real peer connections here never connect.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aioice
import aioice.ice
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    USERDATA_MAX_LENGTH,
    DataChunk,
    RTCSctpTransport,
    SackChunk,
)

import netplay
from netplay import _aiortc
from netplay.conditioner import ConditionerConfig, attach

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the process as if nothing had warned yet."""
    monkeypatch.setattr(_aiortc, "_warned", set())


@pytest.fixture
async def pc() -> AsyncIterator[RTCPeerConnection]:
    """A peer connection with its one data channel (so SCTP, DTLS and ICE transports exist)."""
    pc = RTCPeerConnection()
    pc.createDataChannel("netplay", ordered=False, negotiated=True, id=0, maxRetransmits=0)
    try:
        yield pc
    finally:
        await pc.close()


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "netplay._aiortc" and r.levelno == logging.WARNING]


def ice_of(pc: RTCPeerConnection) -> Any:
    assert pc.sctp is not None
    return pc.sctp.transport.transport


# -- canaries: ICE host addresses -------------------------------------------------------------

def test_canary_aioice_get_host_addresses() -> None:
    # A module function of aioice.ice, looked up as a global each time candidates are gathered.
    original = _aiortc._original_get_host_addresses or getattr(
        aioice.ice, _aiortc._GET_HOST_ADDRESSES)
    assert list(inspect.signature(original).parameters) == ["use_ipv4", "use_ipv6"]
    gather = aioice.ice.Connection.gather_candidates
    assert _aiortc._GET_HOST_ADDRESSES in gather.__code__.co_names


async def test_host_address_pinning_works_on_a_real_aioice_connection() -> None:
    connection = aioice.Connection(ice_controlling=True)
    try:
        with _aiortc.host_addresses(["127.0.0.1"]):
            await connection.gather_candidates()
        hosts = [c.host for c in connection.local_candidates]
        assert hosts and set(hosts) == {"127.0.0.1"}
    finally:
        await connection.close()
    assert aioice.ice.get_host_addresses is _aiortc._get_host_addresses


# -- canaries: link conditioner ---------------------------------------------------------------

def test_canary_create_dtls_transport() -> None:
    create = getattr(RTCPeerConnection, _aiortc._CREATE_DTLS)
    assert inspect.signature(create).return_annotation in (RTCDtlsTransport, "RTCDtlsTransport")


async def test_canary_ice_transport_send(pc: RTCPeerConnection) -> None:
    # DTLS sends every datagram through the ICE transport's instance attribute ``_send``.
    assert "self.transport._send(" in inspect.getsource(RTCDtlsTransport)
    ice = ice_of(pc)
    assert getattr(ice, _aiortc._ICE_SEND) == ice._connection.send


async def test_canary_ice_connection_data_received(pc: RTCPeerConnection) -> None:
    # aioice hands every non-STUN datagram to ``receiver.data_received(data, component)``.
    assert "self.receiver.data_received(" in inspect.getsource(aioice.ice.StunProtocol)
    connection = getattr(ice_of(pc), _aiortc._ICE_CONNECTION)
    assert isinstance(connection, aioice.Connection)
    received = getattr(connection, _aiortc._DATA_RECEIVED)
    assert list(inspect.signature(received).parameters) == ["data", "component"]


async def test_tap_sees_the_original_path_and_installs_the_replacement(
        pc: RTCPeerConnection) -> None:
    ice = ice_of(pc)
    seen = []

    async def send(data: bytes) -> None:
        pass

    def receive(data: bytes, component: int) -> None:
        pass

    def tap(transport: Any, original_send: Any, original_receive: Any) -> Any:
        seen.append((transport, original_send, original_receive))
        return send, receive

    original = (ice, ice._connection.send, ice._connection.data_received)
    _aiortc.tap_datagrams(pc, tap)
    assert seen == [original]
    assert ice._send is send and ice._connection.data_received is receive


# -- canaries: SCTP ---------------------------------------------------------------------------

async def test_canary_sctp_data_channel_receive(pc: RTCPeerConnection) -> None:
    # awaited through ``self`` for every received message, so an instance attribute wins
    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_RECEIVE))
    assert f"await self.{_aiortc._SCTP_RECEIVE}(" in inspect.getsource(RTCSctpTransport._receive)
    assert isinstance(getattr(pc.sctp, _aiortc._SCTP_CHANNELS), dict)


async def test_canary_sctp_rto(pc: RTCPeerConnection) -> None:
    assert getattr(pc.sctp, _aiortc._SCTP_RTO) == 3.0  # RFC 4960 RTO.Initial, aiortc's default
    assert f"self.{_aiortc._SCTP_RTO}" in inspect.getsource(RTCSctpTransport._t1_start)
    assert _aiortc.tune(pc.sctp)
    assert pc.sctp._rto == _aiortc.INITIAL_RTO


async def test_canary_sctp_update_rto(pc: RTCPeerConnection) -> None:
    assert callable(getattr(pc.sctp, _aiortc._SCTP_UPDATE_RTO))
    source = inspect.getsource(RTCSctpTransport._receive_sack_chunk)
    assert f"self.{_aiortc._SCTP_UPDATE_RTO}(" in source  # through self: the instance wins


async def test_canary_sctp_rtt_estimate(pc: RTCPeerConnection) -> None:
    for name in _aiortc._SCTP_RTT_ESTIMATE:
        assert getattr(pc.sctp, name) is None  # no sample yet
    pc.sctp._update_rto(0.05)
    assert [getattr(pc.sctp, name) for name in _aiortc._SCTP_RTT_ESTIMATE] == [0.05, 0.025]
    source = inspect.getsource(RTCSctpTransport._update_rto)
    assert "self._srtt + 4 * self._rttvar" in source  # the RTO netplay recomputes


async def test_canary_sctp_congestion_window(pc: RTCPeerConnection) -> None:
    source = inspect.getsource(RTCSctpTransport)
    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_SACK))
    assert f"await self.{_aiortc._SCTP_SACK}(" in source  # through self: the instance wins
    assert isinstance(getattr(pc.sctp, _aiortc._SCTP_CWND), int)
    # the T3 timer is scheduled with the bound method looked up on self: the instance wins
    t3 = getattr(RTCSctpTransport, _aiortc._SCTP_T3_EXPIRED)
    assert callable(t3) and not inspect.iscoroutinefunction(t3)
    for scheduler in (RTCSctpTransport._t3_start, RTCSctpTransport._t3_restart):
        assert f"self._rto, self.{_aiortc._SCTP_T3_EXPIRED})" in inspect.getsource(scheduler)


async def test_canary_sctp_sent_queue(pc: RTCPeerConnection) -> None:
    assert isinstance(getattr(pc.sctp, _aiortc._SCTP_SENT_QUEUE), collections.deque)
    source = inspect.getsource(RTCSctpTransport._receive_sack_chunk)
    # the sample is the oldest chunk in flight, taken whether or not it was gap-acked
    assert f"schunk = self.{_aiortc._SCTP_SENT_QUEUE}.popleft()" in source
    assert "if done == 1 and schunk._sent_count == 1:" in source
    assert f"schunk.{_aiortc._CHUNK_ACKED} = True" in source
    send = inspect.getsource(RTCSctpTransport._send)
    for name in (_aiortc._CHUNK_ACKED, _aiortc._CHUNK_ABANDONED):
        assert f"chunk.{name} = False" in send


@pytest.mark.parametrize("waited", [None, "_acked", "_abandoned"])
async def test_tune_skips_rtt_samples_of_chunks_that_waited_behind_a_hole(
        pc: RTCPeerConnection, waited: str | None) -> None:
    sctp = pc.sctp
    assert _aiortc.tune(sctp)
    chunk = sent_chunk(sctp._local_tsn, SCTP_DATA_UNORDERED | SCTP_DATA_FIRST_FRAG
                       | SCTP_DATA_LAST_FRAG)
    chunk._book_size, chunk._sent_count, chunk._sent_time = 0, 1, time.time() - 5.0
    if waited is not None:
        setattr(chunk, waited, True)  # it waited 5 s for a hole before the cumulative ack
    sctp._sent_queue.append(chunk)
    sack = SackChunk()
    sack.cumulative_tsn, sack.advertised_rwnd = chunk.tsn, 1 << 20
    await sctp._receive_sack_chunk(sack)
    assert not sctp._sent_queue  # acknowledged
    if waited is None:
        assert sctp._srtt == _aiortc.MAX_RTO  # a fresh 5 s sample, taken as the ceiling
    else:
        assert sctp._srtt is None  # no sample
    assert not getattr(sctp, _aiortc._STALE_SAMPLE)


async def test_canary_sctp_advanced_peer_ack_point(pc: RTCPeerConnection) -> None:
    update = getattr(RTCSctpTransport, _aiortc._SCTP_ADVANCE)
    assert callable(update) and not inspect.iscoroutinefunction(update)
    for caller in (RTCSctpTransport._receive_sack_chunk, RTCSctpTransport._t3_expired):
        assert f"self.{_aiortc._SCTP_ADVANCE}()" in inspect.getsource(caller)
    assert isinstance(getattr(pc.sctp, _aiortc._SCTP_ADVANCED_TSN), int)
    source = inspect.getsource(update)
    # RFC 3758 C2 to the letter: only abandoned chunks move the point
    assert "while self._sent_queue and self._sent_queue[0]._abandoned:" in source
    assert f"self.{_aiortc._SCTP_ADVANCED_TSN} = chunk.tsn" in source


def sent_chunk(tsn: int, flags: int, *, acked: bool = False, abandoned: bool = False) -> Any:
    chunk = DataChunk(flags=flags)
    chunk.tsn, chunk.stream_id, chunk.stream_seq = tsn, 0, 0
    chunk._acked, chunk._abandoned, chunk._in_flight = acked, abandoned, False
    return chunk


@pytest.mark.parametrize("tuned", [True, False])
async def test_tune_forwards_past_received_whole_unordered_messages(
        pc: RTCPeerConnection, tuned: bool) -> None:
    sctp = pc.sctp
    if tuned:
        assert _aiortc.tune(sctp)
    whole = SCTP_DATA_UNORDERED | SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
    base = sctp._last_sacked_tsn
    sctp._sent_queue.extend([
        sent_chunk(base + 1, whole, abandoned=True),  # lost
        sent_chunk(base + 2, whole, acked=True),  # arrived (gap-acked)
        sent_chunk(base + 3, whole, abandoned=True),  # lost
        sent_chunk(base + 4, whole, acked=True),
        sent_chunk(base + 5, SCTP_DATA_UNORDERED | SCTP_DATA_FIRST_FRAG, acked=True),  # half
        sent_chunk(base + 6, SCTP_DATA_UNORDERED | SCTP_DATA_LAST_FRAG),  # in flight
    ])
    sctp._update_advanced_peer_ack_point()
    forward = sctp._forward_tsn_chunk
    assert forward is not None and not forward.streams
    if tuned:  # up to the first fragment of a message still in flight
        assert forward.cumulative_tsn == base + 4
        assert [chunk.tsn for chunk in sctp._sent_queue] == [base + 5, base + 6]
    else:  # aiortc: one hole at a time
        assert forward.cumulative_tsn == base + 1
        assert len(sctp._sent_queue) == 5


async def test_tune_leaves_ordered_chunks_to_aiortc(pc: RTCPeerConnection) -> None:
    sctp = pc.sctp
    assert _aiortc.tune(sctp)
    base = sctp._last_sacked_tsn
    ordered = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
    sctp._sent_queue.extend([sent_chunk(base + 1, ordered, abandoned=True),
                             sent_chunk(base + 2, ordered, acked=True)])
    sctp._update_advanced_peer_ack_point()
    assert sctp._forward_tsn_chunk.cumulative_tsn == base + 1
    assert sctp._forward_tsn_chunk.streams == [(0, 0)]  # aiortc's bookkeeping of the stream
    assert [chunk.tsn for chunk in sctp._sent_queue] == [base + 2]


@pytest.mark.parametrize("tuned", [True, False])
async def test_tune_floors_the_window_when_t3_fires(pc: RTCPeerConnection, tuned: bool) -> None:
    sctp = pc.sctp
    if tuned:
        assert _aiortc.tune(sctp)
    sctp._t3_expired()  # nothing in flight: only the window changes
    await asyncio.sleep(0)  # the _transmit it scheduled
    # aiortc drops the window to one packet: until a SACK, one packet per round trip
    assert sctp._cwnd == (_aiortc.CWND_FLOOR if tuned else USERDATA_MAX_LENGTH)


async def test_tune_keeps_the_window_at_the_floor_after_a_sack(pc: RTCPeerConnection) -> None:
    from aiortc.rtcsctptransport import SackChunk

    sctp = pc.sctp
    assert _aiortc.tune(sctp)
    assert _aiortc.tune(sctp)  # idempotent: wrapped once
    sctp._cwnd, sctp._ssthresh = 1200, 4800  # as after a loss, once associated
    sack = SackChunk()
    sack.cumulative_tsn = sctp._last_sacked_tsn
    await sctp._receive_sack_chunk(sack)
    assert sctp._cwnd == _aiortc.CWND_FLOOR


async def negotiate_on_loopback(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    """Offer from ``a``, answer from ``b``, every host candidate on 127.0.0.1."""
    with _aiortc.host_addresses(["127.0.0.1"]):
        await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    with _aiortc.host_addresses(["127.0.0.1"]):
        await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)


async def test_canary_sctp_sack(pc: RTCPeerConnection) -> None:
    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_SEND_SACK))
    handle = inspect.getsource(RTCSctpTransport._handle_data)
    assert f"if self.{_aiortc._SCTP_SACK_NEEDED}:" in handle  # each packet: SACK if needed
    assert f"await self.{_aiortc._SCTP_SEND_SACK}()" in handle  # through self: instance wins
    for name in (_aiortc._SCTP_MISORDERED, _aiortc._SCTP_DUPLICATES, _aiortc._SCTP_LAST_TSN):
        assert hasattr(pc.sctp, name), name


async def test_tune_acknowledges_every_second_in_order_packet() -> None:
    """Two real peer connections on loopback: with ``tune``, half as many SACKs as packets,
    and every message still arrives."""
    from aiortc import RTCConfiguration

    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        out = a.createDataChannel("d", ordered=False, maxRetransmits=0, negotiated=True, id=0)
        into = b.createDataChannel("d", ordered=False, maxRetransmits=0, negotiated=True, id=0)
        sacks = 0
        original = b.sctp._send_sack

        async def counting() -> None:
            nonlocal sacks
            sacks += 1
            await original()

        b.sctp._send_sack = counting  # under tune's wrapper: counts the SACKs really sent
        for sctp in (a.sctp, b.sctp):
            assert _aiortc.tune(sctp)
        got: list[bytes] = []
        opened = asyncio.Event()
        out.on("open", opened.set)
        into.on("message", got.append)
        await negotiate_on_loopback(a, b)
        await asyncio.wait_for(opened.wait(), 30)
        await asyncio.sleep(0.3)  # the handshake's own SACKs are done
        before = sacks
        count = 40
        for i in range(count):
            out.send(bytes([i]) * 100)
            await asyncio.sleep(0.005)
        async with asyncio.timeout(30):
            while len(got) < count:
                await asyncio.sleep(0.01)
        await asyncio.sleep(_aiortc.SACK_DELAY * 2)  # a held SACK goes on its timer
        sent = sacks - before
        assert count // 2 - 2 <= sent <= count * 0.6, sent
        assert not b.sctp._sack_needed  # nothing left unacknowledged
    finally:
        await a.close()
        await b.close()


async def test_tune_bundles_held_sacks_into_data_packets() -> None:
    """Two real peer connections on loopback taking turns, as two game peers sending states
    both ways do: with ``tune``, the SACK each end holds rides in its next DATA packet, so
    each message costs one packet on the wire (aiortc alone: two, the message and its SACK),
    and both ends still see everything acknowledged."""
    a, b, ends = data_pair()
    try:
        for pc in (a, b):
            assert _aiortc.tune(pc.sctp)
        got: dict[str, asyncio.Queue[bytes]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}
        ends["a"].on("message", got["a"].put_nowait)
        ends["b"].on("message", got["b"].put_nowait)
        opened = asyncio.Event()
        ends["a"].on("open", opened.set)
        await negotiate_on_loopback(a, b)
        await asyncio.wait_for(opened.wait(), 30)
        await asyncio.sleep(0.3)  # the handshake's own SACKs are done
        packets = {"a": 0, "b": 0}
        for name, pc in (("a", a), ("b", b)):
            dtls = pc.sctp.transport
            original = dtls._send_data

            async def counting(data: bytes, name: str = name, original: Any = original) -> None:
                packets[name] += 1
                await original(data)

            dtls._send_data = counting  # aiortc sends every SCTP packet through it
        turns = 40
        async with asyncio.timeout(30):
            for i in range(turns):
                ends["a"].send(bytes([i]) * 300)
                assert await got["b"].get() == bytes([i]) * 300
                ends["b"].send(bytes([i]) * 300)
                assert await got["a"].get() == bytes([i]) * 300
        # one packet per message, and a few SACKs that went on their timer or on their own
        assert packets["a"] + packets["b"] <= 2 * turns * 1.15, packets
        async with asyncio.timeout(30):  # every DATA chunk acknowledged, both ways
            while a.sctp._sent_queue or b.sctp._sent_queue or a.sctp._sack_needed \
                    or b.sctp._sack_needed:
                await asyncio.sleep(0.02)
    finally:
        await a.close()
        await b.close()


async def test_canary_sctp_bundling(pc: RTCPeerConnection) -> None:
    from aiortc import rtcsctptransport

    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_SEND_CHUNK))
    sack = inspect.getsource(RTCSctpTransport._send_sack)
    assert f"await self.{_aiortc._SCTP_SEND_CHUNK}(sack)" in sack  # through self
    transmit = inspect.getsource(RTCSctpTransport._transmit)
    assert f"await self.{_aiortc._SCTP_SEND_CHUNK}(chunk)" in transmit
    for name in _aiortc._SCTP_PACKET_HEADER:
        assert hasattr(pc.sctp, name), name
    assert rtcsctptransport.DataChunk.type == _aiortc._SCTP_DATA_TYPE
    assert isinstance(rtcsctptransport.SCTP_MAX_PACKET_LENGTH, int)
    assert "bytes(chunk)" in inspect.getsource(rtcsctptransport.serialize_packet)
    # aiortc parses every chunk of a packet, so a SACK bundled before DATA is read
    sack_chunk = rtcsctptransport.SackChunk()
    sack_chunk.cumulative_tsn, sack_chunk.advertised_rwnd = 7, 1000
    data_chunk = rtcsctptransport.DataChunk(flags=0x03)
    data_chunk.tsn, data_chunk.stream_id, data_chunk.stream_seq = 9, 0, 0
    data_chunk.protocol, data_chunk.user_data = 53, b"xyz"
    pc.sctp._remote_port = 5000  # set by the remote description, which this pc has none of
    packet = _aiortc._serialize_packet(pc.sctp, [sack_chunk, data_chunk])
    assert packet is not None
    _, _, _, chunks = rtcsctptransport.parse_packet(packet)
    assert [type(c).__name__ for c in chunks] == ["SackChunk", "DataChunk"]
    assert chunks[1].user_data == b"xyz" and chunks[0].cumulative_tsn == 7
    big = rtcsctptransport.DataChunk(flags=0x03)
    big.tsn, big.stream_id, big.stream_seq, big.protocol = 10, 0, 0, 53
    big.user_data = b"x" * rtcsctptransport.USERDATA_MAX_LENGTH
    assert _aiortc._serialize_packet(pc.sctp, [sack_chunk, big]) is None  # would not fit


async def test_handshake_datagrams_go_twice_and_data_once() -> None:
    """Two real peer connections on loopback, 30 ms apart each way (so the handshake outlasts
    the copy gap): with ``copy_handshakes`` on ``a``, every datagram ``a`` sends before its
    SCTP association is up goes out twice (the other end drops the copies), and every one
    after it once. On a fast link the handshake is over before a copy is due: none goes."""
    from aiortc import RTCConfiguration

    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    attach(a, ConditionerConfig(latency_ms=30), None, seed=1)
    try:
        out = a.createDataChannel("d", ordered=False, maxRetransmits=0, negotiated=True, id=0)
        into = b.createDataChannel("d", ordered=False, maxRetransmits=0, negotiated=True, id=0)
        loop = asyncio.get_running_loop()
        before: list[tuple[bytes, float]] = []  # sent while a's SCTP association was not up
        after: list[bytes] = []
        ice = a.sctp.transport.transport
        original = getattr(ice, _aiortc._ICE_SEND)

        async def recording(data: bytes) -> None:
            if a.sctp.state == "connected":
                after.append(data)
            else:
                before.append((data, loop.time()))
            await original(data)

        setattr(ice, _aiortc._ICE_SEND, recording)  # below the copies: sees every datagram
        _aiortc.copy_handshakes(a)
        got: list[bytes] = []
        opened = asyncio.Event()
        connected_at: list[float] = []
        out.on("open", lambda: (connected_at.append(loop.time()), opened.set()))
        into.on("message", got.append)
        await negotiate_on_loopback(a, b)
        await asyncio.wait_for(opened.wait(), 30)
        for i in range(5):
            out.send(bytes([i]) * 50)
        async with asyncio.timeout(30):
            while len(got) < 5:
                await asyncio.sleep(0.01)
        await asyncio.sleep(_aiortc.HANDSHAKE_COPY_GAP * 5)
        sent = [d for d, _ in before]
        # A datagram sent within the copy gap of the association coming up needs no copy.
        due = {d for d, at in before if at < connected_at[0] - _aiortc.HANDSHAKE_COPY_GAP}
        assert len(due) >= 4, "a DTLS and SCTP handshake has more datagrams"
        assert all(sent.count(d) == _aiortc.HANDSHAKE_COPIES for d in due)
        assert len(after) == len(set(after)) >= 5  # data (and SACKs) once each
        assert getattr(ice, _aiortc._ICE_SEND) is recording  # the copier took itself out
    finally:
        await a.close()
        await b.close()


async def test_tune_keeps_the_rto_between_min_rto_and_max_rto(pc: RTCPeerConnection) -> None:
    sctp = pc.sctp
    assert _aiortc.tune(sctp)
    assert _aiortc.tune(sctp)  # idempotent: wrapped once
    sctp._update_rto(12.0)  # a chunk that waited behind a gap for 12 s
    assert sctp._rto == _aiortc.MAX_RTO
    for _ in range(100):  # a steady 10 ms path: SRTT + 4 RTTVAR far below RFC 4960's 1 s
        sctp._update_rto(0.01)
    assert sctp._rto == _aiortc.MIN_RTO < 1.0
    for _ in range(100):  # a steady 300 ms path
        sctp._update_rto(0.3)
    assert _aiortc.MIN_RTO < sctp._rto < 1.0
    assert sctp._rto == pytest.approx(sctp._srtt + 4 * sctp._rttvar)


def test_tune_without_t3_expired_floors_the_window_only_after_sacks(
        caplog: pytest.LogCaptureFixture) -> None:
    async def receive_sack(chunk: Any) -> None:
        stand_in._cwnd = 1200  # a loss halved it

    stand_in = SimpleNamespace(_cwnd=4800, _receive_sack_chunk=receive_sack,
                               _sent_queue=collections.deque())
    with caplog.at_level(logging.WARNING, logger="netplay"):
        assert not _aiortc._floor_cwnd(stand_in)
    [warning] = fallbacks(caplog)
    assert "_t3_expired" in warning and "one packet" in warning
    asyncio.run(stand_in._receive_sack_chunk(None))
    assert stand_in._cwnd == _aiortc.CWND_FLOOR  # the SACK half still works
    assert not hasattr(stand_in, "_t3_expired")


def test_tune_without_the_rtt_estimate_keeps_only_the_ceiling(
        caplog: pytest.LogCaptureFixture) -> None:
    def update_rto(rtt: float) -> None:
        stand_in._rto = max(1.0, 4 * rtt)  # aiortc's RFC 4960 floor

    stand_in = SimpleNamespace(_rto=3.0, _update_rto=update_rto)
    with caplog.at_level(logging.WARNING, logger="netplay"):
        assert not _aiortc._bound_rto(stand_in)
    [warning] = fallbacks(caplog)
    assert "_srtt" in warning and "1 s floor" in warning
    stand_in._update_rto(12.0)
    assert stand_in._rto == _aiortc.MAX_RTO
    stand_in._update_rto(0.01)
    assert stand_in._rto == 1.0  # aiortc's own value, untouched


async def test_guard_installs_on_a_real_transport(pc: RTCPeerConnection) -> None:
    bad: list[tuple[int, str]] = []
    assert _aiortc.guard_streams(pc.sctp, lambda stream, why: bad.append((stream, why)))
    assert _aiortc.guard_streams(pc.sctp, lambda stream, why: None)  # once per transport
    await pc.sctp._data_channel_receive(7, 53, b"x")  # type: ignore[union-attr]
    assert bad and bad[0][0] == 7


# -- canaries: closing ------------------------------------------------------------------------

def test_canary_peer_connection_connect_task() -> None:
    connect = getattr(RTCPeerConnection, _aiortc._PC_CONNECT)
    assert inspect.iscoroutinefunction(connect)
    assert "ensure_future(self.__connect())" in inspect.getsource(
        RTCPeerConnection.setRemoteDescription)


def test_canary_ice_transport_monitor_task() -> None:
    assert inspect.iscoroutinefunction(getattr(RTCIceTransport, _aiortc._ICE_MONITOR))
    assert f"self.{_aiortc._ICE_MONITOR}()" in inspect.getsource(RTCIceTransport.start)


async def test_canary_aioice_consent_task(pc: RTCPeerConnection) -> None:
    connection = ice_of(pc)._connection
    assert getattr(connection, _aiortc._CONSENT_TASK) is None
    assert f"self.{_aiortc._CONSENT_TASK} = asyncio.create_task(" in inspect.getsource(
        aioice.ice.Connection.connect)


async def test_finish_close_finds_a_leftover_connect_task(
        caplog: pytest.LogCaptureFixture) -> None:
    pc = RTCPeerConnection()
    pc.createDataChannel("netplay", negotiated=True, id=0)
    await pc.close()
    task = asyncio.ensure_future(pc._RTCPeerConnection__connect())  # type: ignore[attr-defined]
    assert task in _aiortc._leftover_tasks(pc)
    await _aiortc.finish_close(pc)
    assert task.done()
    assert fallbacks(caplog) == []


# -- fallbacks --------------------------------------------------------------------------------

def test_host_pinning_without_aioice_support_raises_instead_of_ignoring(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delattr(aioice.ice, _aiortc._GET_HOST_ADDRESSES)
    with pytest.raises(RuntimeError, match="get_host_addresses"):
        with _aiortc.host_addresses(["127.0.0.1"]):
            pass
    with pytest.raises(RuntimeError, match="ice_host_addresses"):
        netplay.Mesh(netplay.MeshConfig(lobby_url="ws://127.0.0.1:9/ws",
                                        ice_host_addresses=("127.0.0.1",)))
    with _aiortc.host_addresses(None):  # not asked: nothing needed, nothing said
        pass
    assert fallbacks(caplog) == []


async def test_conditioner_without_the_dtls_factory_raises(
        monkeypatch: pytest.MonkeyPatch, pc: RTCPeerConnection) -> None:
    monkeypatch.setattr(_aiortc, "_CREATE_DTLS", "_RTCPeerConnection__noSuchFactory")
    with pytest.raises(RuntimeError, match="__createDtlsTransport"):
        attach(pc, ConditionerConfig(loss=0.5), None)


@pytest.mark.parametrize(("name", "what"), [("_ICE_SEND", "_send"),
                                            ("_ICE_CONNECTION", "_connection"),
                                            ("_DATA_RECEIVED", "data_received")])
async def test_conditioner_without_the_datagram_path_raises_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, pc: RTCPeerConnection, name: str, what: str) -> None:
    monkeypatch.setattr(_aiortc, name, "_no_such_attribute")
    ice = ice_of(pc)
    send, receive = ice._send, ice._connection.data_received
    with pytest.raises(RuntimeError, match=what):
        attach(pc, ConditionerConfig(loss=0.5), None)
    assert _aiortc._CREATE_DTLS not in vars(pc)
    assert ice._send == send and ice._connection.data_received == receive


@pytest.mark.parametrize("stand_in", [SimpleNamespace(),
                                      SimpleNamespace(_data_channel_receive=lambda *a: None)])
def test_guard_falls_back_with_one_warning(
        caplog: pytest.LogCaptureFixture, stand_in: Any) -> None:
    before = dict(vars(stand_in))
    with caplog.at_level(logging.WARNING, logger="netplay"):
        assert not _aiortc.guard_streams(stand_in, lambda stream, why: None)
        assert not _aiortc.guard_streams(stand_in, lambda stream, why: None)
    [warning] = fallbacks(caplog)
    assert "_data_channel_receive" in warning and "falls back" in warning
    assert vars(stand_in) == before  # nothing installed


def test_tune_falls_back_with_one_warning_per_missing_part(
        caplog: pytest.LogCaptureFixture) -> None:
    stand_in = SimpleNamespace()
    with caplog.at_level(logging.WARNING, logger="netplay"):
        assert not _aiortc.tune(stand_in)
        assert not _aiortc.tune(stand_in)
    rto, update, window, sack, forward = fallbacks(caplog)
    assert "_rto" in rto and "3 s" in rto
    assert "_update_rto" in update and "many seconds" in update
    assert "_receive_sack_chunk" in window and "congestion window" in window
    assert "_send_sack" in sack and "every packet" in sack
    assert "_update_advanced_peer_ack_point" in forward and "falls behind" in forward
    assert vars(stand_in) == {}


@pytest.mark.parametrize(("name", "what"), [("_PC_CONNECT", "RTCPeerConnection.__connect"),
                                            ("_ICE_MONITOR", "RTCIceTransport._monitor")])
async def test_finish_close_falls_back_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        name: str, what: str) -> None:
    monkeypatch.setattr(_aiortc, name, getattr(_aiortc, name) + "_gone")
    pc = RTCPeerConnection()
    pc.createDataChannel("netplay", negotiated=True, id=0)
    await pc.close()
    task = asyncio.ensure_future(pc._RTCPeerConnection__connect())  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="netplay"):
        leftover = _aiortc._leftover_tasks(pc)
        await _aiortc.finish_close(pc)
        await _aiortc.finish_close(pc)
    warnings = fallbacks(caplog)
    assert len(warnings) == 1 and what in warnings[0] and "not cancelled" in warnings[0]
    if name == "_PC_CONNECT":
        assert task not in leftover  # the feature is off
    await asyncio.gather(task, return_exceptions=True)


async def test_finish_close_without_the_consent_task_falls_back_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    ice = SimpleNamespace(state="closed", _connection=SimpleNamespace())
    stand_in = SimpleNamespace(sctp=SimpleNamespace(transport=SimpleNamespace(transport=ice)))
    with caplog.at_level(logging.WARNING, logger="netplay"):
        await _aiortc.finish_close(stand_in)  # type: ignore[arg-type]
        await _aiortc.finish_close(stand_in)  # type: ignore[arg-type]
    [warning] = fallbacks(caplog)
    assert "_query_consent_task" in warning and "not cancelled" in warning


def test_importing_the_conditioner_does_not_import_aiortc_private_hooks() -> None:
    import subprocess
    import sys

    code = ("import sys, netplay.conditioner; "
            "assert 'netplay._aiortc' not in sys.modules and 'aiortc' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- canaries: ICE pairs (prefer direct, selected pair) ---------------------------------------

def test_canary_aioice_check_complete_is_called_through_self() -> None:
    # Both ends of a check report to ``self.check_complete(pair)``, so an instance attribute
    # replaces it; the pair states and the check list are what the hold reads.
    for method in (aioice.ice.Connection.check_start, aioice.ice.Connection.check_incoming):
        assert f"self.{_aiortc._ICE_CHECK_COMPLETE}(" in inspect.getsource(method)
    assert {s.name for s in aioice.ice.CandidatePair.State} == {
        "FROZEN", "WAITING", "IN_PROGRESS", "SUCCEEDED", "FAILED"}


async def test_canary_aioice_check_list_and_nominated(pc: RTCPeerConnection) -> None:
    connection = getattr(ice_of(pc), _aiortc._ICE_CONNECTION)
    assert getattr(connection, _aiortc._ICE_CHECK_LIST) == []
    assert getattr(connection, _aiortc._ICE_CHECK_LIST_DONE) is False
    assert getattr(connection, _aiortc._ICE_NOMINATED) == {}
    assert _aiortc.selected_pair(pc) is None
    assert _aiortc.prefer_direct(pc) and _aiortc.prefer_direct(pc)  # idempotent
    assert _aiortc.ice_succeeded(pc) is False


def _pair(connection: Any, local: str, remote: str) -> Any:
    """A real aioice CandidatePair between candidates of the given types (never checked on
    the network: the hold is logic on the pair states)."""
    def candidate(kind: str, port: int) -> aioice.Candidate:
        return aioice.Candidate(foundation=kind, component=1, transport="udp", priority=1,
                                host="203.0.113.5", port=port, type=kind)
    protocol = SimpleNamespace(local_candidate=candidate(local, 1000))
    pair = aioice.ice.CandidatePair(protocol, candidate(remote, 2000))  # type: ignore[arg-type]
    connection._check_list.append(pair)
    return pair


async def _held_connection(pc: RTCPeerConnection) -> tuple[Any, Any, Any]:
    connection = getattr(ice_of(pc), _aiortc._ICE_CONNECTION)
    assert _aiortc.prefer_direct(pc)
    direct, relayed = _pair(connection, "host", "srflx"), _pair(connection, "host", "relay")
    direct.state = aioice.ice.CandidatePair.State.IN_PROGRESS
    relayed.state, relayed.nominated = aioice.ice.CandidatePair.State.SUCCEEDED, True
    connection.check_complete(relayed)  # the relay answered first ...
    assert connection._nominated == {} and not connection._check_list_done  # ... and waits
    return connection, direct, relayed


async def test_a_direct_pair_that_succeeds_during_the_hold_wins(pc: RTCPeerConnection) -> None:
    connection, direct, relayed = await _held_connection(pc)
    direct.state, direct.nominated = aioice.ice.CandidatePair.State.SUCCEEDED, True
    connection.check_complete(direct)
    assert connection._nominated == {1: direct} and connection._check_list_done
    assert _aiortc.selected_pair(pc) == netplay.CandidatePair(
        "host", ("203.0.113.5", 1000), "srflx", ("203.0.113.5", 2000))
    assert _aiortc.ice_succeeded(pc) is True


async def test_the_held_relay_is_selected_when_every_direct_check_failed(
        pc: RTCPeerConnection) -> None:
    connection, direct, relayed = await _held_connection(pc)
    direct.state = aioice.ice.CandidatePair.State.FAILED
    connection.check_complete(direct)
    assert connection._nominated == {1: relayed} and connection._check_list_done
    assert _aiortc.selected_pair(pc).relayed  # type: ignore[union-attr]


async def test_the_held_relay_is_selected_after_the_grace(
        pc: RTCPeerConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_aiortc, "DIRECT_GRACE", 0.05)
    connection, direct, relayed = await _held_connection(pc)
    async with asyncio.timeout(5):
        while not connection._nominated:
            await asyncio.sleep(0.01)
    assert connection._nominated == {1: relayed} and connection._check_list_done


async def test_prefer_direct_and_selected_pair_fall_back_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    stand_in = SimpleNamespace(sctp=SimpleNamespace(transport=SimpleNamespace(
        transport=SimpleNamespace(_connection=SimpleNamespace()))))
    with caplog.at_level(logging.WARNING, logger="netplay"):
        for _ in range(2):
            assert not _aiortc.prefer_direct(stand_in)  # type: ignore[arg-type]
            assert _aiortc.selected_pair(stand_in) is None  # type: ignore[arg-type]
            assert _aiortc.ice_succeeded(stand_in) is None  # type: ignore[arg-type]
    hold, nominated = fallbacks(caplog)
    assert "check_complete" in hold and "relayed" in hold
    assert "_nominated" in nominated and "candidate_pair stays None" in nominated


# -- inline sends and direct receives ----------------------------------------------------------

async def test_canary_sctp_inline_send(pc: RTCPeerConnection) -> None:
    import collections

    from aiortc import RTCDataChannel, rtcsctptransport

    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_FLUSH))
    assert isinstance(getattr(pc.sctp, _aiortc._SCTP_QUEUE), collections.deque)
    assert hasattr(pc.sctp, _aiortc._SCTP_MAX_MESSAGE)
    assert callable(getattr(RTCDataChannel, _aiortc._CHANNEL_BUFFERED))
    assert rtcsctptransport.WEBRTC_BINARY == _aiortc.WEBRTC_BINARY
    send = inspect.getsource(getattr(RTCSctpTransport, _aiortc._SCTP_CHANNEL_SEND))
    # what send_inline does in its place: a (channel, protocol, data) entry, then a flush
    assert f"self.{_aiortc._SCTP_QUEUE}.append((channel, pp_id, user_data))" in send
    assert f"asyncio.ensure_future(self.{_aiortc._SCTP_FLUSH}())" in send
    channel = inspect.getsource(RTCDataChannel.send)
    assert f"self.transport.{_aiortc._SCTP_CHANNEL_SEND}(self, data)" in channel  # via self


async def test_drive_runs_a_coroutine_that_never_waits_in_the_call() -> None:
    steps: list[str] = []

    async def inner() -> None:
        steps.append("inner")

    async def flush() -> None:
        steps.append("start")
        await inner()
        steps.append("end")

    _aiortc.drive(flush())
    assert steps == ["start", "inner", "end"]  # before the loop ran anything


async def test_drive_hands_a_coroutine_that_waits_to_a_task() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()
    finished = asyncio.Event()
    seen: list[object] = []

    async def flush() -> None:
        seen.append("start")
        seen.append(await gate)  # waits on a future: the rest runs in a task
        await asyncio.sleep(0)  # and a bare yield
        seen.append("end")
        finished.set()

    _aiortc.drive(flush())
    assert seen == ["start"]
    gate.set_result("value")
    await asyncio.wait_for(finished.wait(), 10)
    assert seen == ["start", "value", "end"]


async def test_drive_logs_errors_and_cancellation_reaches_the_coroutine(
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.DEBUG, logger="netplay._aiortc"):
        _aiortc.drive(broken())  # does not raise into the sender
    assert any("aiortc send failed" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)

    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    cancelled = asyncio.Event()

    async def waits() -> None:
        try:
            await never
        except asyncio.CancelledError:
            cancelled.set()
            raise

    _aiortc.drive(waits())
    (task,) = [t for t in _aiortc._finishing]
    task.cancel()
    await asyncio.wait_for(cancelled.wait(), 10)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_inline_send_leaves_in_the_call_and_direct_receive_skips_emit() -> None:
    """Two real peer connections on loopback: with ``send_inline``, a message's packet has
    gone to DTLS when ``send()`` returns (aiortc alone: a task sends it a loop iteration
    later); with ``guard_streams(direct=...)`` binary messages reach the callback and not
    the channel's ``message`` event, and text messages still take the event."""
    a, b, ends = data_pair()
    try:
        assert _aiortc.send_inline(a.sctp)
        direct: asyncio.Queue[bytes] = asyncio.Queue()
        emitted: asyncio.Queue[bytes | str] = asyncio.Queue()
        bad: list[str] = []
        assert _aiortc.guard_streams(b.sctp, lambda stream, why: bad.append(why),
                                     direct={0: direct.put_nowait})
        ends["b"].on("message", emitted.put_nowait)
        opened = asyncio.Event()
        ends["a"].on("open", opened.set)
        await negotiate_on_loopback(a, b)
        await asyncio.wait_for(opened.wait(), 30)
        sent: list[int] = []
        dtls = a.sctp.transport
        original = dtls._send_data

        async def counting(data: bytes) -> None:
            sent.append(len(data))
            await original(data)

        dtls._send_data = counting
        async with asyncio.timeout(30):
            for i in range(20):
                before = len(sent)
                ends["a"].send(bytes([i]) * 200)
                assert len(sent) > before  # it left in the call
                assert ends["a"].bufferedAmount == 0
                assert await direct.get() == bytes([i]) * 200
            ends["a"].send("text")  # not ours: aiortc's own path, and the event
            assert await emitted.get() == "text"
        assert emitted.empty() and not bad
    finally:
        await a.close()
        await b.close()


def data_pair() -> tuple[RTCPeerConnection, RTCPeerConnection, dict[str, Any]]:
    """Two peer connections (no ICE servers) with netplay's channel each, not connected."""
    from aiortc import RTCConfiguration

    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    ends = {name: pc.createDataChannel("d", ordered=False, maxRetransmits=0, negotiated=True,
                                       id=0) for name, pc in (("a", a), ("b", b))}
    return a, b, ends


async def test_canary_dtls_inline_receive(pc: RTCPeerConnection) -> None:
    from aioice import Connection
    from aiortc import rtcdtlstransport

    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_HANDLE_DATA))
    assert inspect.iscoroutinefunction(getattr(RTCSctpTransport, _aiortc._SCTP_SEND))
    assert inspect.iscoroutinefunction(getattr(RTCDtlsTransport, _aiortc._DTLS_WRITE_SSL))
    dtls = pc.sctp.transport
    for name in (_aiortc._DTLS_SSL, _aiortc._DTLS_HANDSHAKE_DONE, _aiortc._DTLS_RX_BYTES,
                 _aiortc._DTLS_RX_PACKETS):
        assert hasattr(dtls, name), name
    assert getattr(dtls, _aiortc._DTLS_RECEIVER) is None  # SCTP registers itself on start
    assert f"self.{_aiortc._DTLS_RECEIVER} = receiver" in inspect.getsource(
        RTCDtlsTransport._register_data_receiver)
    connection = getattr(ice_of(pc), _aiortc._ICE_CONNECTION)
    assert isinstance(getattr(connection, _aiortc._ICE_QUEUE), asyncio.Queue)
    assert isinstance(getattr(pc.sctp, _aiortc._SCTP_OUTBOUND), __import__("collections").deque)
    assert getattr(pc.sctp, _aiortc._SCTP_ASSOCIATION) is not RTCSctpTransport.State.ESTABLISHED
    # what receive_inline does in the reader's place
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    for line in ("data = await self.transport._recv()", "self.__rx_bytes += len(data)",
                 "self.__rx_packets += 1", "self._ssl.bio_write(data)",
                 "data = self._ssl.recv(1500)", "except SSL.ZeroReturnError:",
                 "await self._write_ssl()", "await self._data_receiver._handle_data(data)"):
        assert line in source, line
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(
        Connection.data_received)
    assert "result = await self._queue.get()" in inspect.getsource(Connection.recvfrom)
    assert rtcdtlstransport.SSL is __import__("OpenSSL").SSL


async def test_inline_receive_hands_records_to_sctp_in_aioices_callback() -> None:
    """Two real peer connections on loopback: once ``receive_inline`` is installed, each
    message reaches its callback inside aioice's ``data_received`` call (aiortc alone: its
    DTLS reader task takes it from a queue a loop iteration later); the DTLS counters still
    count it, and closing the other end still closes this one's DTLS transport."""
    a, b, ends = data_pair()
    try:
        assert _aiortc.send_inline(a.sctp)
        got: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        inside = [False]
        assert _aiortc.guard_streams(b.sctp, lambda stream, why: None,
                                     direct={0: lambda data: got.put_nowait((data, inside[0]))})
        opened = asyncio.Event()
        ends["b"].on("open", opened.set)
        await negotiate_on_loopback(a, b)
        await asyncio.wait_for(opened.wait(), 30)
        assert _aiortc.receive_inline(b)
        assert _aiortc.receive_inline(b)  # installed once
        connection = getattr(ice_of(b), _aiortc._ICE_CONNECTION)
        installed = connection.data_received

        def watching(data: bytes, component: int) -> None:
            inside[0] = True
            try:
                installed(data, component)
            finally:
                inside[0] = False

        connection.data_received = watching
        dtls = b.sctp.transport
        packets_before = getattr(dtls, _aiortc._DTLS_RX_PACKETS)
        async with asyncio.timeout(30):
            for i in range(20):
                ends["a"].send(bytes([i]) * 100)
                assert await got.get() == (bytes([i]) * 100, True)
        assert getattr(dtls, _aiortc._DTLS_RX_PACKETS) >= packets_before + 20
        closed = asyncio.Event()
        dtls.on("statechange", lambda: closed.set() if dtls.state == "closed" else None)
        await a.close()
        await asyncio.wait_for(closed.wait(), 30)  # a's close_notify: aiortc's reader
    finally:
        await a.close()
        await b.close()


def test_inline_paths_fall_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    stand_in = SimpleNamespace(sctp=SimpleNamespace())
    with caplog.at_level(logging.WARNING, logger="netplay"):
        assert not _aiortc.send_inline(stand_in.sctp)
        assert not _aiortc.send_inline(stand_in.sctp)
        assert not _aiortc.receive_inline(stand_in)  # type: ignore[arg-type]
        assert not _aiortc.receive_inline(stand_in)  # type: ignore[arg-type]
    send, receive = fallbacks(caplog)
    assert "_data_channel_send" in send and "a task and a loop iteration" in send
    assert "data_received" in receive and "per datagram received" in receive
    assert vars(stand_in.sctp) == {}  # nothing installed
