"""One lobby WebSocket: per-frame checks, dispatch to the backend, and an output queue.

:class:`Connection` runs one accepted socket: a read loop that checks each frame (rate, size,
schema, hello deadline, auth) before anything reaches the :class:`~signaling.lobby.Backend`,
and a writer task that sends what the backend and the loop queue for it. :class:`ServerState`
is what the connections of one app share (settings, backend, per-address limits, rate-limited
warnings). ``signaling.app`` accepts sockets and hands them here.

Whatever a client sends, it gets a typed ``error`` or a documented close code (docs/lobby.md,
"Errors"); nothing it sends makes the server log a traceback, and warnings about misbehaving
clients are rate-limited (one line per kind every 10 s, with a count of the ones left out).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Final, NoReturn

from starlette import status
from starlette.types import Receive, Send
from starlette.websockets import WebSocket

from netplay._ratelimit import WarnLimiter
from netplay.errors import ProtocolError
from netplay.protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    Error,
    ErrorCode,
    Hello,
    Host,
    IceServerInfo,
    Join,
    Kick,
    Leave,
    ListLobbies,
    LobbyList,
    Lock,
    Ping,
    Pong,
    QuickMatch,
    SetMetadata,
    Signal,
    Unlock,
    Welcome,
    encode,
    hello_version_of,
    parse_client,
    request_id_of,
)

from .auth import turn_credentials, verify_token
from .limits import AddressLimits, TokenBucket
from .lobby import Backend, LeaveReason, LobbyError, check_name
from .settings import Settings

__all__ = ["AsgiConnection", "Connection", "ServerState", "ice_servers", "where"]

logger = logging.getLogger("signaling")

MAX_OUTBOX: Final = 16_384
"""Frames queued for one connection before it counts as too slow to read and is closed."""
MAX_OUTBOX_BYTES: Final = 2 << 20
"""Bytes queued for one connection before it counts as too slow to read and is closed. Under
overload a healthy client may fall behind for a while; one that stopped reading hits this."""

ABUSE: Final = frozenset({ErrorCode.BAD_MESSAGE, ErrorCode.NOT_AUTHENTICATED,
                          ErrorCode.TOO_LARGE, ErrorCode.RATE_LIMITED})
"""Errors that cost the connection a strike (see ``Settings.max_strikes``)."""

_CLOSE: Final = object()

FAILED_JOIN: Final = frozenset({ErrorCode.BAD_PASSWORD, ErrorCode.LOBBY_NOT_FOUND})
"""Join refusals that spend the address's failed-join allowance (``password_attempts``)."""


def where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``: one line instead of a
    traceback in the log."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def ice_servers(settings: Settings, peer_id: str, now: float | None = None) -> list[IceServerInfo]:
    """The STUN/TURN servers for one peer, with freshly minted TURN credentials."""
    servers = []
    if settings.stun_urls:
        servers.append(IceServerInfo(urls=list(settings.stun_urls)))
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret, peer_id,
                                                settings.turn_ttl, now=now)
        servers.append(IceServerInfo(urls=list(settings.turn_urls), username=username,
                                     credential=credential))
    return servers


class _Closing(Exception):
    """Ends a connection's read loop: close the socket with ``code`` after flushing."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ServerState:
    """What the connections of one app share: settings, backend, limits, warnings."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.connections: dict[str, Connection] = {}
        """Attached connections by peer id."""
        self.open_connections = 0
        self.timers: set[asyncio.Task[None]] = set()
        self.limits = AddressLimits(max_connections=settings.max_connections_per_ip,
                                    max_lobbies=settings.max_lobbies_per_ip,
                                    failed_joins_per_minute=settings.password_attempts)
        self.warn = WarnLimiter(logger)
        """Warnings about clients: one line per kind every 10 s, with a count of the rest."""
        self.errors = WarnLimiter(logger, level=logging.ERROR)
        """Server bugs met while handling a request: one line (no traceback) per kind."""

    def expire_after(self, delay: float) -> None:
        """Run :meth:`Backend.expire` once, ``delay`` seconds from now (a dropped host's
        handover is due then; the regular sweep may be up to a second late)."""
        async def expire() -> None:
            await asyncio.sleep(delay + 0.05)  # timers may fire a clock tick early
            try:
                await self.backend.expire()
            except Exception as exc:  # pragma: no cover - the regular sweep tries again
                self.errors.warn("sweep", "expiring suspended peers failed: %r at %s",
                                 exc, where(exc))

        task = asyncio.create_task(expire())
        self.timers.add(task)
        task.add_done_callback(self.timers.discard)


class Connection:
    """One lobby client, whatever carries its frames: the per-frame checks (:meth:`_check`),
    dispatch to the backend (:meth:`_handle`) and the output queue (:meth:`deliver`).

    Subclasses move the frames: :class:`AsgiConnection` over an ASGI WebSocket (a read loop and
    a writer task), ``signaling.direct.DirectConnection`` straight on the socket."""

    __slots__ = ("address", "backend", "close_code", "close_reason", "hello_due", "hosting",
                 "last_seen", "loop", "outbox", "peer_id", "queued_bytes", "rate", "resumable",
                 "settings", "shared", "strikes")

    def __init__(self, shared: ServerState, address: str) -> None:
        self.address = address
        self.shared = shared
        self.settings = shared.settings
        self.backend = shared.backend
        self.peer_id: str | None = None
        self.outbox: list[object] = []
        """Frames for the writer (and ``_CLOSE``), which takes them all at once. A list costs
        less per frame than an ``asyncio.Queue`` (and an empty list less memory than a
        deque)."""
        self.queued_bytes = 0
        """Characters of the frames in :attr:`outbox` (bytes for ASCII JSON)."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.last_seen = loop.time()
        """When the client last sent a frame (for the idle timeout)."""
        self.hello_due = self.last_seen + self.settings.hello_timeout
        self.rate = TokenBucket(self.settings.rate, self.settings.burst)
        self.strikes = TokenBucket(1.0, self.settings.max_strikes)
        self.close_code: int | None = None
        self.close_reason = ""
        self.resumable = True
        self.hosting = False
        """This connection created the lobby it is in and still hosts it (counted in
        ``AddressLimits``)."""

    # --- output ---

    def deliver(self, frame: str) -> None:
        """Queue one frame for the writer (called by the backend too; never blocks)."""
        if self.close_code is not None:
            return
        if len(self.outbox) >= MAX_OUTBOX or self.queued_bytes > MAX_OUTBOX_BYTES:
            self.shared.warn.warn("slow", "%s (%s) is too slow to read its messages; closing",
                                  self.peer_id, self.address)
            self.outbox.clear()
            self.queued_bytes = 0
            self.close_code, self.close_reason = status.WS_1008_POLICY_VIOLATION, "too slow"
            self.push(_CLOSE)
            self._interrupt()  # the client may send nothing more: stop waiting for it
            return
        self.queued_bytes += len(frame)
        self.push(frame)

    def push(self, item: object) -> None:
        """Queue a frame (or ``_CLOSE``) for the writer and wake it."""
        raise NotImplementedError

    def _interrupt(self) -> bool:
        """The writer gave up on a slow reader: stop waiting for the client's frames."""
        raise NotImplementedError

    def reply_error(self, code: ErrorCode, message: str, request_id: int | None) -> None:
        """Send an ``error``; an abusive one costs a strike, and one too many closes (1008)."""
        self.deliver(encode(Error(id=request_id, code=code, message=message)))
        if code in ABUSE and not self.strikes.take():
            self.resumable = False
            self.shared.warn.warn("strikes", "closing %s (%s): too many bad messages (last: %s)",
                                  self.peer_id or "a client", self.address, code.value)
            raise _Closing(status.WS_1008_POLICY_VIOLATION, "too many bad messages")

    async def _leave(self, reason: LeaveReason) -> None:
        """The connection is over: give up its seat, or keep it for the resume grace."""
        # A peer that dropped (not left) keeps its seat, and a lone host its lobby, for the
        # resume grace: the lobby counts against the address until then.
        held = reason != "left" and self.resumable
        self._stop_hosting(grace=self.settings.resume_grace if held else 0.0)
        try:
            await self._detach(reason)
        except Exception as exc:  # e.g. a backend that lost its store: one line, go on
            self.shared.errors.warn(("detach", type(exc)), "detaching %s failed: %r at %s",
                                    self.peer_id, exc, where(exc))

    async def _detach(self, reason: LeaveReason) -> None:
        if self.peer_id is None:
            return
        if self.shared.connections.get(self.peer_id) is self:
            del self.shared.connections[self.peer_id]
            grace = self.settings.resume_grace if self.resumable else 0.0
            await self.backend.disconnect(self.peer_id, reason, grace)
            if grace > 0:  # if it hosted a lobby, the role moves on this soon
                self.shared.expire_after(min(self.backend.host_grace, grace))

    def _stop_hosting(self, grace: float = 0.0) -> None:
        """This connection no longer hosts the lobby it created (after ``grace`` seconds: a
        dropped host's lobby may live on that long, waiting for it to resume)."""
        if not self.hosting:
            return
        self.hosting = False
        if grace > 0:
            asyncio.get_running_loop().call_later(grace, self.shared.limits.stopped_hosting,
                                                  self.address)
        else:
            self.shared.limits.stopped_hosting(self.address)

    def _due(self) -> float:
        """When the connection times out unless it sends something (or says hello)."""
        due = self.last_seen + self.settings.idle_timeout
        return min(due, self.hello_due) if self.peer_id is None else due

    def _check(self, text: str | None, data: bytes | None) -> ClientMessage | None:
        """The request in one frame, or None when the frame was refused (answered with an
        ``error``; too many refusals raise ``_Closing``)."""
        if text is None:
            size = len(data or b"")
            if size > self.settings.max_message_bytes:
                self.reply_error(ErrorCode.TOO_LARGE, f"frame of {size} bytes is larger than "
                                 f"{self.settings.max_message_bytes}", None)
            else:
                self.reply_error(ErrorCode.BAD_MESSAGE, "frames must be JSON text, not binary",
                                 None)
            return None
        limit = self.settings.max_message_bytes
        if len(text) > limit // 4 and (size := len(text.encode())) > limit:
            self.reply_error(ErrorCode.TOO_LARGE,
                             f"message of {size} bytes is larger than {limit}", None)
            return None
        if not self.rate.take():
            self.reply_error(ErrorCode.RATE_LIMITED,
                             f"more than {self.settings.rate:g} messages per second; slow down",
                             request_id_of(text))
            return None
        try:
            return parse_client(text)
        except ProtocolError as exc:
            version = hello_version_of(text)
            if self.peer_id is None and version is not None and version != PROTOCOL_VERSION:
                # Another version's hello may have other fields: still name both versions.
                self._refuse_version(version, request_id_of(text))
            self.reply_error(ErrorCode.BAD_MESSAGE, str(exc), request_id_of(text))
            return None

    async def _handle(self, request: ClientMessage) -> None:
        """Dispatch a checked request; a refusal or a server bug is answered with an ``error``."""
        try:
            await self._dispatch(request)
        except LobbyError as exc:
            self.reply_error(exc.code, exc.message, request.id)
        except _Closing:
            raise
        except Exception as exc:
            self._failed(request, exc)

    def _failed(self, request: ClientMessage, exc: Exception) -> None:
        """A bug met handling ``request``: one line in the log, a typed error to the client."""
        self.shared.errors.warn(("request", request.type, type(exc)),
                                "error handling %s from %s (%s): %r at %s", request.type,
                                self.peer_id, self.address, exc, where(exc))
        self.reply_error(ErrorCode.INTERNAL, "internal server error", request.id)

    def _timed_out(self) -> LeaveReason:
        """The connection is due (:meth:`_due`): set its close code; a missed hello deadline
        is answered ``not_authenticated`` (raises ``_Closing``)."""
        if self.peer_id is None and self.loop.time() >= self.hello_due:
            self.shared.warn.warn("hello", "closing a connection from %s: no hello within "
                                  "%g s", self.address, self.settings.hello_timeout)
            self._refuse(ErrorCode.NOT_AUTHENTICATED, f"no valid hello within "
                         f"{self.settings.hello_timeout:g} s", None)
        logger.info("%s sent nothing for %g s; dropping it", self.peer_id or "a client",
                    self.settings.idle_timeout)
        self.close_code = status.WS_1001_GOING_AWAY
        self.close_reason = "idle timeout"
        return "timed_out"

    async def _dispatch(self, request: ClientMessage) -> None:
        if isinstance(request, Hello):
            await self._hello(request)
            return
        if isinstance(request, Ping):
            self.deliver(encode(Pong(id=request.id, t=request.t)))
            return
        peer_id = self.peer_id
        if peer_id is None:
            raise LobbyError(ErrorCode.NOT_AUTHENTICATED, "send hello first")
        backend = self.backend
        limits = self.shared.limits
        match request:
            case Host() | QuickMatch():
                if not limits.may_host(self.address):
                    raise LobbyError(ErrorCode.TOO_MANY_LOBBIES,
                                     f"your address already hosts "
                                     f"{self.settings.max_lobbies_per_ip} lobbies")
                # A host is counted before the backend runs: its reply may reach the client
                # (and the client's next request on another connection) before it returns
                # here. A quick match mostly joins, so it is counted only once it created one.
                hosting = isinstance(request, Host)
                if hosting:
                    limits.hosting(self.address)
                created = False
                try:
                    if isinstance(request, Host):
                        info = await backend.host(peer_id, request)
                    else:
                        info = await backend.quick_match(peer_id, request)
                    created = info.host == peer_id and len(info.members) == 1
                finally:
                    if created:
                        self.hosting = True
                        if not hosting:
                            limits.hosting(self.address)
                    elif hosting:  # refused: nothing was created
                        limits.stopped_hosting(self.address)
            case Join():
                wait = limits.may_join(self.address)
                if wait:  # the same answer whether the code exists or not
                    raise LobbyError(ErrorCode.RATE_LIMITED,
                                     f"too many failed joins from your address; try again in "
                                     f"{wait:.0f} s")
                try:
                    await backend.join(peer_id, request)
                except LobbyError as exc:
                    if exc.code in FAILED_JOIN:
                        limits.join_failed(self.address)
                    raise
            case ListLobbies():
                lobbies = await backend.list_lobbies(request.game, request.filter)
                self.deliver(encode(LobbyList(id=request.id, lobbies=lobbies)))
            case Leave():
                # Uncount the lobby before the backend runs: its "ok" may reach the client (and
                # the client's next request on another connection) before it returns here.
                was_hosting = self.hosting
                self._stop_hosting()
                try:
                    await backend.leave(peer_id, request.id)
                except BaseException:
                    if was_hosting:  # still in its lobby after all
                        self.hosting = True
                        limits.hosting(self.address)
                    raise
            case Signal():
                await backend.relay(peer_id, request)
            case Kick():
                await backend.kick(peer_id, request.peer, request.id)
            case Lock() | Unlock():
                await backend.set_locked(peer_id, isinstance(request, Lock), request.id)
            case SetMetadata():
                await backend.set_metadata(peer_id, request.metadata, request.id)

    async def _hello(self, hello: Hello) -> None:
        if self.peer_id is not None:
            raise LobbyError(ErrorCode.BAD_MESSAGE, "hello was already sent on this connection")
        if hello.v != PROTOCOL_VERSION:
            self._refuse_version(hello.v, hello.id)
        # A valid resume token proves an earlier, authenticated session: no auth token needed.
        session = await self.backend.resume(hello.resume, self.deliver) if hello.resume else None
        if session is None:
            self._authenticate(hello)
            name = check_name(hello.name, self.settings.max_name_length)
            session = await self.backend.connect(name, self.deliver)
        old = self.shared.connections.get(session.peer_id)
        self.shared.connections[session.peer_id] = self
        self.peer_id = session.peer_id
        if session.lobby is not None and session.lobby.host == session.peer_id:
            self.hosting = True  # it resumed as a host: count the lobby again
            self.shared.limits.hosting(self.address)
        self.deliver(encode(Welcome(
            id=hello.id, peer_id=session.peer_id, resume_token=session.resume_token,
            ice_servers=ice_servers(self.settings, session.peer_id), resumed=session.resumed,
            lobby=session.lobby,
        )))
        for frame in session.backlog:
            self.deliver(frame)
        if old is not None:  # the peer resumed on this connection: retire the old one
            old.retire()

    def retire(self, *, lost: bool = False) -> None:
        """Close without leaving: the peer resumed on another connection, or (``lost``) the
        backend lost its session (the client must say hello anew)."""
        self._stop_hosting()
        self.peer_id = None
        self.close_code, self.close_reason = ((status.WS_1012_SERVICE_RESTART, "session lost")
                                              if lost else (status.WS_1008_POLICY_VIOLATION,
                                                            "resumed elsewhere"))
        self.push(_CLOSE)

    def _authenticate(self, hello: Hello) -> None:
        secret = self.settings.auth_secret
        if not secret:
            return
        if not hello.token:
            self._refuse(ErrorCode.NOT_AUTHENTICATED, "this lobby needs an auth token in hello",
                         hello.id)
        try:
            verify_token(secret, hello.token)
        except LobbyError as exc:
            self._refuse(exc.code, exc.message, hello.id)

    def _refuse_version(self, version: int, request_id: int | None) -> NoReturn:
        self._refuse(ErrorCode.UNSUPPORTED_VERSION,
                     f"this lobby speaks protocol version {PROTOCOL_VERSION}, the client speaks "
                     f"version {version}; update the older side", request_id)

    def _refuse(self, code: ErrorCode, message: str, request_id: int | None) -> NoReturn:
        self.deliver(encode(Error(id=request_id, code=code, message=message)))
        self.resumable = False
        raise _Closing(status.WS_1008_POLICY_VIOLATION, code.value)


class AsgiConnection(Connection):
    """A connection over an ASGI WebSocket: a read loop (the task running :meth:`run`) and a
    writer task (what ``--ws-impl asgi`` and ``/ws`` under a ``root_path`` use)."""

    __slots__ = ("expired", "reader", "receive", "receiving", "send", "wake", "watchdog", "ws")

    def __init__(self, ws: WebSocket, shared: ServerState, address: str,
                 receive: Receive, send: Send) -> None:
        super().__init__(shared, address)
        self.ws = ws
        self.receive = receive
        """The ASGI ``receive`` of this connection (frames; Starlette's checks are not needed
        once the socket is accepted)."""
        self.send = send
        """The ASGI ``send``."""
        self.wake: asyncio.Future[None] | None = None
        """Set while the writer waits for :attr:`outbox` to fill."""
        self.expired = False
        """Set by :meth:`_watch` just before it interrupts :meth:`_read`."""
        self.watchdog: asyncio.TimerHandle | None = None
        self.reader: asyncio.Task[None] | None = None
        """The task running :meth:`run` (and :meth:`_read`)."""
        self.receiving = False
        """:meth:`_read` is waiting for a frame (the only place :meth:`_watch` interrupts)."""

    def push(self, item: object) -> None:
        self.outbox.append(item)
        wake = self.wake
        if wake is not None:
            self.wake = None
            if not wake.done():
                wake.set_result(None)

    async def _write(self) -> None:
        send = self.send
        try:
            while True:
                if not self.outbox:
                    self.wake = self.loop.create_future()
                    await self.wake
                    continue
                batch, self.outbox, self.queued_bytes = self.outbox, [], 0
                for item in batch:
                    if item is _CLOSE:
                        if self.close_code is not None:
                            await self.ws.close(self.close_code, self.close_reason)
                        return
                    await send({"type": "websocket.send", "text": item})
        except Exception as exc:  # the client went away mid-send
            logger.debug("send to %s failed: %r", self.peer_id, exc)

    # --- the connection's life ---

    async def run(self) -> None:
        """Serve the connection until it closes, then give up its seat (or keep it for the
        resume grace) and flush what is queued for it."""
        writer = asyncio.create_task(self._write())
        reason: LeaveReason = "disconnected"
        self.shared.open_connections += 1
        self.reader = task = asyncio.current_task()
        assert task is not None
        self._watch()
        try:
            reason = await self._read(task)
        except _Closing as closing:
            self.close_code, self.close_reason = closing.code, closing.reason
        except Exception as exc:  # a bug: close this connection, keep the server going
            self.shared.errors.warn(("connection", type(exc)), "connection of %s (%s) failed: "
                                    "%r at %s", self.peer_id, self.address, exc, where(exc))
            self.close_code = status.WS_1011_INTERNAL_ERROR
            self.close_reason = "internal error"
        finally:
            if self.watchdog is not None:
                self.watchdog.cancel()
            self.shared.open_connections -= 1
            await self._leave(reason)
            self.push(_CLOSE)
            try:
                await asyncio.wait_for(writer, timeout=5)
            except TimeoutError:  # pragma: no cover - client stopped reading
                pass

    def _interrupt(self) -> bool:
        """Make :meth:`_read` stop waiting for a frame (it then looks at why); False when it
        is not waiting (it looks at ``close_code`` after each frame anyway)."""
        if not self.receiving or self.expired or self.reader is None:
            return False
        self.expired = True
        self.reader.cancel()
        return True

    def _watch(self) -> None:
        """One timer per connection for the idle timeout and the hello deadline (cheaper than
        a timeout around every receive): interrupt :meth:`_read` once the connection is due,
        or look again when it will be."""
        due = self._due()
        now = self.loop.time()
        if now >= due and self._interrupt():
            return
        self.watchdog = self.loop.call_at(max(due, now + 0.05), self._watch)

    async def _read(self, task: asyncio.Task[None]) -> LeaveReason:
        loop = self.loop
        receive = self.receive
        while True:
            self.receiving = True
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not self.expired:
                    raise
                task.uncancel()
                if self.close_code is not None:  # the writer gave up on a slow reader
                    return "disconnected"
                return self._timed_out()
            finally:
                self.receiving = False
            self.last_seen = loop.time()
            if message["type"] == "websocket.disconnect":
                code = message.get("code") or status.WS_1005_NO_STATUS_RCVD
                return "left" if code in (status.WS_1000_NORMAL_CLOSURE,
                                          status.WS_1001_GOING_AWAY) else "disconnected"
            request = self._check(message.get("text"), message.get("bytes"))
            if request is not None:
                await self._handle(request)
            if self.close_code is not None:  # the writer gave up on a slow reader
                return "disconnected"
