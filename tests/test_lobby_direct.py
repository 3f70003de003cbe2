"""signaling.direct: ``/ws`` served on the socket, below ASGI (``ws_impl="direct"``, the
default), against a real uvicorn lobby on an ephemeral port.

The rest of the lobby suite runs on this path too (tests/conftest.py starts lobbies as
``netplay-lobby`` does); these tests cover the RFC 6455 framing it does itself: fragments,
control frames, close codes, protocol errors, frames split across reads and many in one, the
handshake, and what still goes through the ASGI app.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from netplay.protocol import PROTOCOL_VERSION
from signaling.settings import Settings
from tests.conftest import LobbyServer, run_lobby

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
          rsv: int = 0) -> bytes:
    """One client frame (masked, as RFC 6455 requires unless ``masked=False``)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65_536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client on a plain TCP stream: sends any bytes, reads server frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload). Server frames are never masked."""
        async def read() -> tuple[int, bytes]:
            first, second = await self.reader.readexactly(2)
            assert not second & 0x80, "a server frame was masked"
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            assert first & 0x80, "the server fragmented a frame"
            return first & 0x0F, await self.reader.readexactly(size)
        return await asyncio.wait_for(read(), timeout)

    async def message(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == TEXT, (opcode, payload)
        result: dict[str, Any] = json.loads(payload)
        return result

    async def closed_with(self, *, answer: bool = True) -> tuple[int, str]:
        """Read to the server's close frame: its (code, reason); once answered (``answer``:
        the server started the close; not when its frame echoes the client's), the server
        hangs up."""
        while True:
            opcode, payload = await self.frame()
            if opcode == CLOSE:
                code = int.from_bytes(payload[:2], "big")
                if answer:  # as a client should (a second close after an echo would meet a
                    await self.send(frame(CLOSE, payload[:2]))  # closed socket: a reset)
                assert await asyncio.wait_for(self.reader.read(), 10) == b""  # TCP closed
                return code, payload[2:].decode()


async def raw_connect(server: LobbyServer, path: str = "/ws",
                      headers: dict[str, str] | None = None) -> tuple[bytes, RawClient]:
    """Open a TCP connection, send the upgrade request; return the response head and client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, RawClient(reader, writer)


@pytest.fixture(scope="module")
def direct_lobby() -> Any:
    with run_lobby(max_message_bytes=1024) as server:
        yield server


@pytest.fixture
async def raw(direct_lobby: LobbyServer) -> AsyncIterator[RawClient]:
    head, client = await raw_connect(direct_lobby)
    assert head.startswith(b"HTTP/1.1 101 "), head
    yield client
    await client.close()


def ping(request_id: int) -> bytes:
    return json.dumps({"type": "ping", "id": request_id}).encode()


def test_the_default_is_the_direct_path() -> None:
    assert Settings().ws_impl == "direct"
    with pytest.raises(ValueError, match="ws_impl must be one of direct, asgi"):
        Settings(ws_impl="fast")


async def test_a_fragmented_message_is_put_together(raw: RawClient) -> None:
    message = ping(7)
    await raw.send(frame(TEXT, message[:5], fin=False) + frame(0, message[5:9], fin=False))
    await raw.send(frame(PING, b"between fragments"))  # control frames may come in between
    await raw.send(frame(0, message[9:]))
    assert await raw.frame() == (PONG, b"between fragments")
    assert await raw.message() == {"type": "pong", "id": 7}


async def test_frames_split_across_reads_and_many_in_one_read(raw: RawClient) -> None:
    data = b"".join(frame(TEXT, ping(i)) for i in range(1, 41))
    data += frame(TEXT, b'{"type": "ping", "id": 41,' + b" " * 300 + b'"t": 1.5}')  # 16-bit size
    for start in range(0, len(data), 7):  # 7-byte pieces: every header and mask cut somewhere
        await raw.send(data[start:start + 7])
    data = b"".join(frame(TEXT, ping(i)) for i in range(42, 61))
    await raw.send(data)  # and 19 frames in one write
    for i in range(1, 61):
        reply = await raw.message()
        assert (reply["type"], reply["id"]) == ("pong", i)


async def test_ping_frames_are_answered_with_their_payload(direct_lobby: LobbyServer) -> None:
    async with ws_connect(direct_lobby.url) as ws:
        latency = await asyncio.wait_for(await ws.ping(b"are you there"), 5)
        assert latency >= 0
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_a_clean_close_is_echoed(raw: RawClient) -> None:
    await raw.send(frame(TEXT, ping(1)))
    assert (await raw.message())["type"] == "pong"
    await raw.send(frame(CLOSE, (1000).to_bytes(2, "big") + b"bye"))
    assert await raw.closed_with(answer=False) == (1000, "")  # echoed, then the socket closes


@pytest.mark.parametrize(("data", "code"), [
    (frame(TEXT, ping(1), masked=False), 1002),  # clients must mask
    (frame(TEXT, ping(1), rsv=4), 1002),  # no extension was negotiated
    (frame(0, b"{}"), 1002),  # a continuation with nothing to continue
    (frame(TEXT, b"{", fin=False) + frame(TEXT, b"}"), 1002),  # a new message mid-message
    (frame(3, b""), 1002),  # a reserved opcode
    (frame(PING, b"", fin=False), 1002),  # control frames are never fragmented
    (frame(PING, b"x" * 126), 1002),  # nor longer than 125 bytes
    (frame(CLOSE, b"\x03"), 1002),  # a close payload of one byte
    (frame(CLOSE, (999).to_bytes(2, "big")), 1002),  # not a close code a peer may send
    (frame(TEXT, b'{"type": "ping", "t": "\xff"}'), 1007),  # not UTF-8
    (frame(BINARY, b"x" * ((1 << 20) + 1)), 1009),  # over ws_max_size
], ids=["unmasked", "rsv", "lone-continuation", "interleaved-message", "reserved-opcode",
        "fragmented-ping", "long-ping", "short-close", "bad-close-code", "bad-utf8", "too-big"])
async def test_protocol_violations_close_with_their_code(raw: RawClient, data: bytes,
                                                         code: int) -> None:
    await raw.send(data)
    closed_code, _ = await raw.closed_with()
    assert closed_code == code


async def test_oversize_is_refused_before_the_frame_arrives(raw: RawClient) -> None:
    # Only the header of a 1 GiB frame: the server must not wait for (or buffer) the payload.
    await raw.send(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 30) + os.urandom(4))
    assert (await raw.closed_with())[0] == 1009


async def test_the_close_behind_a_refused_frame_ends_the_handshake(raw: RawClient) -> None:
    """A frame refused from its header (1009) is skipped unread, so the client's close frame
    right behind it is found and the server hangs up at once, not after its close timer."""
    from signaling import direct

    loop = asyncio.get_running_loop()
    await raw.send(frame(BINARY, b"x" * ((1 << 20) + 1)) + frame(CLOSE, (1000).to_bytes(2, "big")))
    opcode, payload = await raw.frame(timeout=10)
    assert opcode == CLOSE and int.from_bytes(payload[:2], "big") == 1009
    started = loop.time()
    assert await asyncio.wait_for(raw.reader.read(), 10) == b""  # TCP closed
    assert loop.time() - started < direct._CLOSE_WAIT / 2


async def test_binary_frames_get_a_typed_error(raw: RawClient) -> None:
    await raw.send(frame(BINARY, ping(1)))
    reply = await raw.message()
    assert (reply["type"], reply["code"]) == ("error", "bad_message")
    await raw.send(frame(BINARY, b"x" * 2000))  # over max_message_bytes (1024)
    reply = await raw.message()
    assert (reply["type"], reply["code"]) == ("error", "too_large")


async def test_a_bad_handshake_gets_an_http_error(direct_lobby: LobbyServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", direct_lobby.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 8\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5)
    await RawClient(reader, writer).close()
    assert response.startswith(b"HTTP/1.1 426 "), response
    assert b"Sec-WebSocket-Version: 13" in response


async def test_other_paths_still_go_through_the_asgi_app(direct_lobby: LobbyServer) -> None:
    with pytest.raises(InvalidStatus) as refused:  # Starlette: no such WebSocket route
        async with ws_connect(f"ws://127.0.0.1:{direct_lobby.port}/nope"):
            pass
    assert refused.value.response.status_code == 403
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{direct_lobby.http_url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_the_asgi_path_still_serves_ws() -> None:
    with run_lobby(ws_impl="asgi", max_connections_per_ip=1) as server:
        async with ws_connect(server.url) as ws:
            await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "name": "a"}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            async with ws_connect(server.url) as second:  # the limits apply there too
                assert json.loads(await second.recv())["code"] == "rate_limited"
                with pytest.raises(ConnectionClosed):
                    await second.recv()
                assert second.close_code == 1013


async def test_forwarded_for_from_a_trusted_proxy_is_the_client_address() -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: each forwarded address gets
    # its own connection allowance, as on the ASGI path.
    with run_lobby(max_connections_per_ip=1) as server:
        async with ws_connect(server.url, additional_headers={"X-Forwarded-For": "10.0.0.1"}), \
                ws_connect(server.url, additional_headers={"X-Forwarded-For": "10.0.0.2"}) as b:
            await b.send(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(await b.recv())["type"] == "pong"
            async with ws_connect(server.url,
                                  additional_headers={"X-Forwarded-For": "10.0.0.1"}) as c:
                assert json.loads(await c.recv())["code"] == "rate_limited"
                with pytest.raises(ConnectionClosed):
                    await c.recv()
                assert c.close_code == 1013


async def test_a_client_that_stops_reading_is_closed_too_slow() -> None:
    # The relay writes straight to the socket; once the kernel's and the transport's buffers
    # are full, frames wait in the outbox, and past its limit the reader is closed "too slow".
    with run_lobby(rate=100_000, burst=100_000, max_message_bytes=60_000,
                   resume_grace=0) as server:
        head, stalled = await raw_connect(server)
        assert head.startswith(b"HTTP/1.1 101 ")
        await stalled.send(frame(TEXT, json.dumps({"type": "hello", "v": PROTOCOL_VERSION,
                                                   "name": "stalled"}).encode()))
        stalled_id = (await stalled.message())["peer_id"]
        await stalled.send(frame(TEXT, json.dumps({"type": "host", "id": 2,
                                                   "game": "g"}).encode()))
        code = (await stalled.message())["lobby"]["code"]
        async with ws_connect(server.url, max_queue=None) as sender:
            await sender.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "name": "s"}))
            await sender.recv()
            await sender.send(json.dumps({"type": "join", "id": 2, "code": code}))
            signal = json.dumps({"type": "signal", "to": stalled_id,
                                 "payload": {"kind": "offer", "sdp": "v=0" + "c" * 50_000}})
            events: list[dict[str, Any]] = []

            async def read() -> None:
                async for message in sender:
                    events.append(json.loads(message))

            reader = asyncio.create_task(read())
            deadline = asyncio.get_running_loop().time() + 60
            while not any(e["type"] in ("peer_left", "host_changed") for e in events):
                assert asyncio.get_running_loop().time() < deadline, "never closed"
                await sender.send(signal)
                await asyncio.sleep(0.002)
            reader.cancel()
        assert await stalled.closed_with() == (1008, "too slow")
        await stalled.close()


async def test_a_burst_keeps_its_order_behind_backend_requests(lobby_factory: Any,
                                                               connect: Any) -> None:
    # On Redis every signal waits for Redis in a task, and the frames behind it wait their
    # turn (past MAX_PENDING the socket is not read until the task catches up); in memory a
    # signal is relayed within the read. Either way: every answer, in the order asked.
    server = lobby_factory(rate=100_000, burst=100_000)
    head, ann = await raw_connect(server)
    assert head.startswith(b"HTTP/1.1 101 ")
    try:
        await ann.send(frame(TEXT, json.dumps({"type": "hello", "id": 1, "v": PROTOCOL_VERSION,
                                               "name": "ann"}).encode()))
        assert (await ann.message())["type"] == "welcome"
        await ann.send(frame(TEXT, b'{"type": "host", "id": 2, "game": "g"}'))
        code = (await ann.message())["lobby"]["code"]
        bob = await connect(server, "bob")
        assert (await bob.request("join", code=code))["type"] == "lobby"
        assert (await ann.message())["type"] == "peer_joined"
        count = 300  # 600 frames in one write: several times MAX_PENDING
        burst = []
        for i in range(count):
            burst.append(frame(TEXT, json.dumps({
                "type": "signal", "id": 2 * i + 10, "to": bob.peer_id,
                "payload": {"kind": "candidate", "candidate": str(i)}}).encode()))
            burst.append(frame(TEXT, json.dumps({"type": "ping", "id": 2 * i + 11}).encode()))
        await ann.send(b"".join(burst))
        answers = [await ann.message() for _ in range(2 * count)]
        assert [(a["type"], a["id"]) for a in answers] == [
            ("ok" if i % 2 == 0 else "pong", i + 10) for i in range(2 * count)]
        signals = [await bob.recv(timeout=20) for _ in range(count)]
        assert [s["payload"]["candidate"] for s in signals] == [str(i) for i in range(count)]
    finally:
        await ann.close()
