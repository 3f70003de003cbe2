"""``/ws`` served straight on the socket, below ASGI (``--ws-impl direct``, the default).

uvicorn hands a WebSocket upgrade to the protocol class given as its ``ws`` option.
:class:`LobbyWebSocketProtocol` is that class: for ``/ws`` it completes the handshake itself
and runs RFC 6455 frames straight between the transport and a :class:`DirectConnection`;
any other WebSocket path goes to uvicorn's own protocol and the ASGI app, as before.

Why: through ASGI, a relayed signal costs a parse in the ``websockets`` library's generator
parser, an ``asyncio.Queue`` put and a reader-task wake-up, then a writer-task wake-up and an
awaited ``send`` on the other side, and each connection holds uvicorn's protocol, the websockets
protocol with its handshake request and response, the queue, events and the ASGI task
(bench/RESULTS.md, "Where the relay's time goes"). Here a frame is parsed in
``data_received`` (masking in ``websockets.speedups``' C code), a signal is checked and relayed
synchronously when the backend can (:meth:`~signaling.lobby.Backend.relay_now`; the memory
backend always can), and frames for a connection are written once per event-loop iteration,
all of one connection's frames in one ``transport.write``. Requests that need the backend's
I/O (everything on Redis, ``hello``, ``host``, ...) run in a task that exists only while
there is such work, in arrival order.

Every check of :class:`~signaling.connection.Connection` applies unchanged: origin list
(close 1008 "origin not allowed"), per-address connections (``rate_limited``, close 1013),
hello deadline, idle timeout, rate limit, sizes, strikes, the outbox limit ("too slow"), auth.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
from collections import deque
from typing import Any, Final, cast

from starlette import status
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
from uvicorn.server import ServerState as UvicornState

from netplay.protocol import ClientMessage, Error, ErrorCode, Ping, Pong, Signal, encode

from .connection import _CLOSE, Connection, ServerState, _Closing, where
from .lobby import LeaveReason, LobbyError
from .settings import Settings

try:  # the C version ships in websockets' wheels; the fallback is its pure-Python one
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a source build of websockets without a compiler
    from websockets.utils import apply_mask

__all__ = ["STATE_KEY", "DirectConnection", "DirectLobby", "LobbyWebSocketProtocol",
           "uvicorn_ws"]

logger = logging.getLogger("signaling")

STATE_KEY: Final = "netplay.lobby"
"""Key of the :class:`DirectLobby` in the app's lifespan state (uvicorn's ``app_state``)."""

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CLOSE_WAIT: Final = 5.0
"""Seconds to wait for the client's close frame after sending ours."""
MAX_PENDING: Final = 64
"""Frames waiting behind a request that needs the backend's I/O before reading pauses."""
_TEXT, _BINARY, _CLOSE_OP, _PING, _PONG = 1, 2, 8, 9, 10


def uvicorn_ws(settings: Settings) -> type[asyncio.Protocol] | str:
    """uvicorn's ``ws`` option for ``settings.ws_impl``: this module's protocol class for
    ``direct``, uvicorn's default (``"auto"``) for ``asgi``."""
    return LobbyWebSocketProtocol if settings.ws_impl == "direct" else "auto"


class DirectLobby:
    """What :class:`LobbyWebSocketProtocol` needs from the app: the shared connection state
    and the origin list (``create_app`` puts it in the lifespan state)."""

    __slots__ = ("origins", "shared")

    def __init__(self, shared: ServerState) -> None:
        self.shared = shared
        self.origins = frozenset(shared.settings.allowed_origins)

    def origin_refused(self, origin: str | None) -> bool:
        """``origin`` is not on the list (no ``Origin`` header: a native client, allowed)."""
        origins = self.origins
        return bool(origins) and "*" not in origins and origin is not None \
            and origin not in origins


def _header(opcode: int, size: int) -> bytes:
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65_536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


def _close_payload(code: int, reason: str) -> bytes:
    return code.to_bytes(2, "big") + reason.encode()[:123]


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send in a close frame (RFC 6455 7.4)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


class _Flusher:
    """Writes queued frames once per event-loop iteration: every connection that got frames
    since the last flush, each with one ``transport.write`` (one callback for all of them)."""

    __slots__ = ("dirty", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[DirectConnection] = []
        self.scheduled = False

    def add(self, connection: DirectConnection) -> None:
        self.dirty.append(connection)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for connection in dirty:
            connection.flush()


_flushers: dict[asyncio.AbstractEventLoop, _Flusher] = {}


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        if len(_flushers) > 8:  # loops of stopped servers (tests start many)
            for old in [old for old in _flushers if old.is_closed()]:
                del _flushers[old]
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    return None


_proxies: dict[int, tuple[Config, ProxyHeadersMiddleware]] = {}


def _proxy_headers(config: Config) -> ProxyHeadersMiddleware:
    """uvicorn's ``X-Forwarded-For`` middleware with ``config``'s trusted proxies, over an app
    that does nothing: run on a scope, it sets the scope's client as the ASGI path sees it."""
    known = _proxies.get(id(config))
    if known is None or known[0] is not config:
        if len(_proxies) > 8:
            _proxies.clear()
        known = _proxies[id(config)] = (config, ProxyHeadersMiddleware(
            _nothing, trusted_hosts=config.forwarded_allow_ips))
    return known[1]


class LobbyWebSocketProtocol(asyncio.Protocol):
    """uvicorn's ``ws`` protocol class: ``/ws`` directly, any other path through uvicorn's
    default WebSocket protocol and the ASGI app.

    One object per connection for the frames (this) and one for the lobby
    (:class:`DirectConnection`), both with ``__slots__``; no task, queue or event per
    connection, and nothing of the handshake is kept."""

    __slots__ = ("buffer", "config", "connection", "fallback", "fragments", "fragments_size",
                 "paused", "server_state", "app_state", "transport", "closing", "close_timer",
                 "max_size", "discard")

    def __init__(self, config: Config, server_state: UvicornState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.transport: asyncio.Transport | None = None
        self.fallback: asyncio.Protocol | None = None
        """uvicorn's protocol serving a path other than ``/ws`` (every event goes to it)."""
        self.connection: DirectConnection | None = None
        self.buffer = b""
        """Received bytes that do not make a whole frame yet."""
        self.discard = 0
        """Bytes still to drop: the rest of a frame refused from its header (1009), so the
        client's close frame behind it is still found."""
        self.fragments: list[bytes] | None = None
        """The frames of a fragmented message so far (its first frame's opcode first)."""
        self.fragments_size = 0
        self.max_size = config.ws_max_size
        self.paused = False
        """The transport's write buffer is over its high-water mark."""
        self.closing = False
        """A close frame was sent, or the connection is gone: no more frames either way."""
        self.close_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server_state.connections.add(self)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self.fallback is not None:
            self.fallback.data_received(data)
        elif self.connection is None:
            self._handshake(data)
        elif not self.closing or self.close_timer is not None:
            self._frames(data)

    def eof_received(self) -> bool | None:
        if self.fallback is not None:
            return self.fallback.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.fallback is not None:
            self.fallback.pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        if self.fallback is not None:
            self.fallback.resume_writing()
            return
        self.paused = False
        if self.connection is not None and self.connection.outbox:
            self.connection.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fallback is not None:
            self.fallback.connection_lost(exc)
            return
        self.server_state.connections.discard(self)
        self.closing = True
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.connection is not None:
            self.connection.lost()

    def shutdown(self) -> None:
        """uvicorn is stopping: close 1012 (the client resumes on an instance still up)."""
        if self.fallback is not None:
            self.fallback.shutdown()  # type: ignore[attr-defined]
            return
        transport = self.transport
        if transport is None:
            return
        if self.connection is not None and not self.closing:
            self.connection.flush()
            transport.write(_header(_CLOSE_OP, 2) + (1012).to_bytes(2, "big"))
            self.closing = True
            self.connection.end("disconnected")
        transport.close()

    # --- the handshake ---

    def _handshake(self, request: bytes) -> None:
        """``request`` is the upgrade request as uvicorn rebuilt it (its HTTP parser has read
        it): answer ``/ws`` here, hand anything else to uvicorn's protocol."""
        head, _, _ = request.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, target, _ = (lines[0].split(b" ", 2) + [b"", b""])[:3]
        path = target.partition(b"?")[0]
        lobby: DirectLobby | None = self.app_state.get(STATE_KEY)
        if path != b"/ws" or lobby is None:  # the lifespan did not run: no lobby to serve
            self._fall_back(request)
            return
        headers: dict[bytes, bytes] = {}
        raw: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = value
            raw.append((name, value))
        key = headers.get(b"sec-websocket-key", b"")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            valid_key = False
        if method != b"GET" or headers.get(b"sec-websocket-version") != b"13" or not valid_key:
            self._http_error(b"426 Upgrade Required" if valid_key else b"400 Bad Request",
                             b"not a WebSocket handshake (RFC 6455 version 13)")
            return
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        response = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: ", accept, b"\r\n"]
        for name, value in self.server_state.default_headers:
            response += [name, b": ", value, b"\r\n"]
        response.append(b"\r\n")
        assert self.transport is not None
        self.transport.write(b"".join(response))
        address = self._client_address(raw)
        origin = headers.get(b"origin")
        self.connection = connection = DirectConnection(lobby.shared, address, self)
        if lobby.origin_refused(origin.decode("latin-1") if origin is not None else None):
            lobby.shared.warn.warn("origin", "refused a WebSocket from origin %r",
                                   origin.decode("latin-1") if origin else origin)
            # A close frame with a reason reaches a page; a refused handshake (HTTP 403) only
            # as a generic error.
            connection.refuse(status.WS_1008_POLICY_VIOLATION, "origin not allowed")
            return
        connection.start()

    def _client_address(self, headers: list[tuple[bytes, bytes]]) -> str:
        """The client's host as the ASGI path sees it: the TCP peer, or behind a trusted proxy
        its ``X-Forwarded-For`` (uvicorn's own middleware decides, with its settings)."""
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and peer else None
        if self.config.proxy_headers and client is not None:
            scope: dict[str, Any] = {"type": "websocket", "client": client,
                                     "headers": headers, "scheme": "ws"}
            step = _proxy_headers(self.config)(scope, None, None)  # type: ignore[arg-type]
            try:  # it awaits nothing but the no-op app: one step runs it to the end
                step.send(None)
            except StopIteration:
                pass
            else:  # pragma: no cover - a uvicorn whose middleware suspends
                step.close()
            client = scope["client"]
        return str(client[0]) if client else "unknown"

    def _fall_back(self, request: bytes) -> None:
        assert self.transport is not None
        self.server_state.connections.discard(self)
        assert AutoWebSocketsProtocol is not None
        fallback = AutoWebSocketsProtocol(config=self.config,
                                          server_state=self.server_state,
                                          app_state=self.app_state)
        self.fallback = fallback
        fallback.connection_made(self.transport)
        fallback.data_received(request)

    def _http_error(self, status_line: bytes, message: bytes) -> None:
        assert self.transport is not None
        self.closing = True
        self.transport.write(b"HTTP/1.1 " + status_line + b"\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: " + str(len(message)).encode() + b"\r\n"
                             b"Connection: close\r\nSec-WebSocket-Version: 13\r\n\r\n" + message)
        self.transport.close()

    # --- frames ---

    def _frames(self, data: bytes) -> None:
        if self.discard:
            dropped = min(self.discard, len(data))
            self.discard -= dropped
            data = data[dropped:]
            if not data:
                return
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        end = len(data)
        pos = 0
        connection = self.connection
        assert connection is not None
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            size = second & 0x7F
            start = pos + 6
            if size == 126:
                if end - pos < 4:
                    break
                size = int.from_bytes(data[pos + 2:pos + 4], "big")
                start = pos + 8
            elif size == 127:
                if end - pos < 10:
                    break
                size = int.from_bytes(data[pos + 2:pos + 10], "big")
                start = pos + 14
            if not second & 0x80:
                self.fail(status.WS_1002_PROTOCOL_ERROR, "client frames must be masked")
                return
            stop = start + size
            if size > self.max_size or self.fragments_size + size > self.max_size:
                self.fail(status.WS_1009_MESSAGE_TOO_BIG,
                          f"frame of {size} bytes is larger than {self.max_size}")
                # skip the refused frame unread, so the client's close frame that follows it
                # ends the close handshake at once (else the socket waits _CLOSE_WAIT)
                if stop > end:
                    self.discard = stop - end
                    return
                pos = stop
                continue
            if stop > end:
                break
            payload = apply_mask(data[start:stop], data[start - 4:start])
            pos = stop
            opcode = first & 0x0F
            if first & 0x70:
                self.fail(status.WS_1002_PROTOCOL_ERROR, "reserved bits set")
                return
            if opcode >= 8:
                if not first & 0x80 or size > 125:
                    self.fail(status.WS_1002_PROTOCOL_ERROR, "bad control frame")
                    return
                if not self._control(opcode, payload):
                    return
                continue
            if opcode == 0:
                fragments = self.fragments
                if fragments is None:
                    self.fail(status.WS_1002_PROTOCOL_ERROR, "unexpected continuation frame")
                    return
                fragments.append(payload)
                self.fragments_size += size
                if not first & 0x80:
                    continue
                opcode = fragments[0][0]
                payload = b"".join(fragments[1:])
                self.fragments = None
                self.fragments_size = 0
            elif opcode not in (_TEXT, _BINARY):
                self.fail(status.WS_1002_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                return
            elif self.fragments is not None:
                self.fail(status.WS_1002_PROTOCOL_ERROR, "expected a continuation frame")
                return
            elif not first & 0x80:
                self.fragments = [bytes((opcode,)), payload]
                self.fragments_size = size
                continue
            if self.closing:  # a close frame was sent: data frames are dropped
                continue
            if opcode == _TEXT:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    self.fail(status.WS_1007_INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8")
                    return
                connection.received(text, None)
            else:
                connection.received(None, payload)
        if pos < end:
            self.buffer = data[pos:]

    def _control(self, opcode: int, payload: bytes) -> bool:
        """Handle a ping, pong or close frame; False when the connection is done reading."""
        assert self.transport is not None and self.connection is not None
        if opcode == _PING:
            if not self.closing:
                self.transport.write(_header(_PONG, len(payload)) + payload)
            return True
        if opcode == _PONG:
            return True
        if opcode != _CLOSE_OP:
            self.fail(status.WS_1002_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return False
        code = status.WS_1005_NO_STATUS_RCVD
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                self.fail(status.WS_1007_INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8")
                return False
            if not _valid_close_code(code):
                self.fail(status.WS_1002_PROTOCOL_ERROR, f"invalid close code {code}")
                return False
        elif payload:
            self.fail(status.WS_1002_PROTOCOL_ERROR, "close frame of one byte")
            return False
        if not self.closing:  # the client closes: answer with its code, then hang up
            self.connection.flush()
            echo = b"" if code == status.WS_1005_NO_STATUS_RCVD else code.to_bytes(2, "big")
            self.transport.write(_header(_CLOSE_OP, len(echo)) + echo)
            self.closing = True
            self.connection.end("left" if code in (status.WS_1000_NORMAL_CLOSURE,
                                                   status.WS_1001_GOING_AWAY)
                                else "disconnected")
        self.transport.close()  # the server ends the TCP connection (RFC 6455 7.1.1)
        return False

    def fail(self, code: int, reason: str) -> None:
        """A protocol violation: close with ``code`` now (what the lobby queued is dropped)."""
        assert self.connection is not None
        self.connection.outbox.clear()
        self.connection.close_code, self.connection.close_reason = code, reason
        self.connection.resumable = False
        self.send_close(code, reason)
        self.connection.end("disconnected")

    def send_close(self, code: int, reason: str) -> None:
        """Send a close frame, then wait a while for the client's."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        payload = _close_payload(code, reason)
        self.transport.write(_header(_CLOSE_OP, len(payload)) + payload)
        self.close_timer = asyncio.get_running_loop().call_later(_CLOSE_WAIT,
                                                                 self.transport.close)

    def write(self, frames: list[bytes]) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(b"".join(frames))


class DirectConnection(Connection):
    """A lobby connection whose frames come from :class:`LobbyWebSocketProtocol`.

    A frame is checked and, when it is a ``ping`` or a signal the backend relays without I/O,
    answered at once; any other request runs in a task, and the frames behind it wait in
    :attr:`pending` until it is done (so each connection's requests keep their order)."""

    __slots__ = ("ended", "pending", "protocol", "queued", "reading", "task", "watchdog")

    def __init__(self, shared: ServerState, address: str,
                 protocol: LobbyWebSocketProtocol) -> None:
        super().__init__(shared, address)
        self.protocol = protocol
        self.task: asyncio.Task[None] | None = None
        """Runs requests that need the backend's I/O, while there are any."""
        self.pending: deque[tuple[str | None, bytes | None]] | None = None
        """Frames that came while :attr:`task` ran."""
        self.queued = False
        """Waiting for the next flush."""
        self.watchdog: asyncio.TimerHandle | None = None
        self.ended = False
        """:meth:`end` ran: the connection gave up its seat (or is giving it up)."""
        self.reading = True
        """The socket is read (False while :attr:`pending` is too long)."""

    # --- life ---

    def start(self) -> None:
        """The handshake is done: count the connection against its address, then serve."""
        shared = self.shared
        if not shared.limits.connect(self.address):
            shared.warn.warn("connections", "refused a connection from %s: it already has %d "
                             "open", self.address, self.settings.max_connections_per_ip)
            self.refuse(status.WS_1013_TRY_AGAIN_LATER, "too many connections", encode(Error(
                code=ErrorCode.RATE_LIMITED,
                message=f"too many connections from your address (at most "
                        f"{self.settings.max_connections_per_ip}); try again later")))
            return
        shared.open_connections += 1
        self._watch()

    def refuse(self, code: int, reason: str, frame: str | None = None) -> None:
        """Close a connection that never reached the lobby (it is not counted anywhere)."""
        self.ended = True
        self.close_code, self.close_reason = code, reason
        if frame is not None:
            data = frame.encode()
            self.protocol.write([_header(_TEXT, len(data)), data])
        self.protocol.send_close(code, reason)

    def end(self, reason: LeaveReason) -> None:
        """Stop serving: give up the seat (or keep it for the resume grace), then close."""
        if self.ended:
            return
        self.ended = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        shared = self.shared
        shared.open_connections -= 1
        shared.limits.disconnect(self.address)
        self.pending = None
        if self.task is None and not self._attached():
            self._stop_hosting()
            self.push(_CLOSE)
            return
        # A request in progress finishes first (a backend call is not cut in half), then the
        # connection gives up its seat, as the ASGI path's read loop does.
        task = self.loop.create_task(self._finish(reason))
        tasks = self.protocol.server_state.tasks  # uvicorn waits for them on shutdown
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _attached(self) -> bool:
        return self.peer_id is not None and self.shared.connections.get(self.peer_id) is self

    async def _finish(self, reason: LeaveReason) -> None:
        if self.task is not None:
            await asyncio.wait((self.task,))
        await self._leave(reason)
        self.push(_CLOSE)

    def lost(self) -> None:
        """The TCP connection is gone (with or without a close frame)."""
        self.end("disconnected")

    def _close(self, code: int, reason: str, leave: LeaveReason = "disconnected") -> None:
        """The lobby closes the connection (after sending what is queued)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.end(leave)

    def retire(self, *, lost: bool = False) -> None:
        super().retire(lost=lost)
        self.end("disconnected")

    def _interrupt(self) -> bool:
        self.end("disconnected")  # too slow: _CLOSE is queued
        return True

    def _watch(self) -> None:
        self.watchdog = None
        if self.ended:
            return
        due = self._due()
        now = self.loop.time()
        if now >= due:
            try:
                reason = self._timed_out()
            except _Closing as closing:
                self._close(closing.code, closing.reason)
                return
            self._close(status.WS_1001_GOING_AWAY, self.close_reason, reason)
            return
        self.watchdog = self.loop.call_at(max(due, now + 0.05), self._watch)

    # --- output ---

    def push(self, item: object) -> None:
        self.outbox.append(item)
        if not self.queued:
            self.queued = True
            _flusher(self.loop).add(self)

    def flush(self) -> None:
        """Write what is queued, in one ``transport.write`` (unless the client is not reading:
        then it waits, and :meth:`deliver` closes a connection that falls too far behind)."""
        self.queued = False
        protocol = self.protocol
        if protocol.paused and self.close_code is None and not protocol.closing:
            return
        outbox, self.outbox, self.queued_bytes = self.outbox, [], 0
        parts: list[bytes] = []
        for item in outbox:
            if item is _CLOSE:
                protocol.write(parts)
                parts = []
                if self.close_code is not None:
                    protocol.send_close(self.close_code, self.close_reason)
                elif not protocol.closing:
                    protocol.send_close(status.WS_1000_NORMAL_CLOSURE, "")
                break
            data = item.encode()  # type: ignore[attr-defined]
            parts.append(_header(_TEXT, len(data)))
            parts.append(data)
        if parts:
            protocol.write(parts)

    # --- input ---

    def received(self, text: str | None, data: bytes | None) -> None:
        """One message from the client, in order."""
        if self.ended or self.close_code is not None:
            return
        self.last_seen = self.loop.time()
        if self.task is not None:
            pending = self.pending
            if pending is None:
                pending = self.pending = deque()
            pending.append((text, data))
            if len(pending) >= MAX_PENDING:
                self._reading(False)  # resumed when the task catches up
            return
        try:
            request = self._check(text, data)
            if request is None or self._now(request):
                return
        except _Closing as closing:
            self._close(closing.code, closing.reason)
            return
        except Exception as exc:  # a bug: close this connection, keep the server going
            self._broken(exc)
            return
        self.task = task = self.loop.create_task(self._work(request))
        task.add_done_callback(self._worked)

    def _now(self, request: ClientMessage) -> bool:
        """Handle ``request`` without I/O if it can be (a ``ping``, a signal the backend
        relays at once); False when it needs :meth:`_handle`."""
        if isinstance(request, Ping):
            self.deliver(encode(Pong(id=request.id, t=request.t)))
            return True
        if isinstance(request, Signal) and self.peer_id is not None:
            try:
                return self.backend.relay_now(self.peer_id, request)
            except LobbyError as exc:
                self.reply_error(exc.code, exc.message, request.id)
            except _Closing:
                raise
            except Exception as exc:
                self._failed(request, exc)
            return True
        return False

    async def _work(self, request: ClientMessage | None) -> None:
        """Handle ``request``, then the frames that came meanwhile, in order."""
        while True:
            if request is not None:
                await self._handle(request)
                request = None
            pending = self.pending
            if not pending or self.ended or self.close_code is not None:
                # Done now, not in _worked: a frame that comes before that callback runs
                # must not wait in pending for a task that has finished.
                self.task = None
                return
            text, data = pending.popleft()
            if len(pending) <= MAX_PENDING // 2:
                self._reading(True)
            request = self._check(text, data)
            if request is not None and self._now(request):
                request = None

    def _worked(self, task: asyncio.Task[None]) -> None:
        if self.task is task:
            self.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, _Closing):
            self._close(exc.code, exc.reason)
        elif exc is not None:
            self._broken(exc)
        elif self.close_code is not None and not self.ended:  # e.g. the writer gave up
            self.end("disconnected")
        if not self.ended:
            self._reading(True)

    def _reading(self, on: bool) -> None:
        """Pause reading the socket while :attr:`pending` is long, resume once it is not."""
        transport = self.protocol.transport
        if on == self.reading or transport is None or transport.is_closing():
            return
        self.reading = on
        if on:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _broken(self, exc: BaseException) -> None:
        self.shared.errors.warn(("connection", type(exc)), "connection of %s (%s) failed: "
                                "%r at %s", self.peer_id, self.address, exc, where(exc))
        self._close(status.WS_1011_INTERNAL_ERROR, "internal error")
