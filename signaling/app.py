"""The Starlette app: adapts WebSocket connections to the lobby core, plus two HTTP routes.

Routes
    ``/ws``        the lobby protocol (``netplay.protocol``), one JSON text frame per message
    ``/healthz``   ``{"status": "ok", "connections": ..., "lobbies": ..., ...}``; 503
                   ``{"status": "unavailable", "reason": ...}`` while the backend cannot serve
                   (its Redis is unreachable)
    ``/lobbies``   public open lobbies as JSON, ``?game=`` to filter

Each connection is checked here (frame size, rate, schema, hello/auth) before anything reaches
the :class:`~signaling.backend.Backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final, NoReturn

from starlette import status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

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
from .backend import Backend, LeaveReason, LobbyError, check_name
from .memory import MemoryBackend
from .settings import Settings

__all__ = ["create_app", "create_app_from_env", "ice_servers"]

logger = logging.getLogger("signaling")

MAX_OUTBOX: Final = 1024
"""Frames queued for one connection before it counts as too slow to read and is closed."""

ABUSE: Final = frozenset({ErrorCode.BAD_MESSAGE, ErrorCode.NOT_AUTHENTICATED,
                          ErrorCode.TOO_LARGE, ErrorCode.RATE_LIMITED})
"""Errors that cost the connection a strike (see ``Settings.max_strikes``)."""

_CLOSE: Final = object()


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; :meth:`take` spends one."""

    def __init__(self, rate: float, capacity: int, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


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


class _AppState:
    """Per-app state shared by all connections."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.connections: dict[str, _Connection] = {}
        """Attached connections by peer id."""
        self.open_connections = 0
        self.timers: set[asyncio.Task[None]] = set()

    def expire_after(self, delay: float) -> None:
        """Run :meth:`Backend.expire` once, ``delay`` seconds from now (a dropped host's
        handover is due then; the regular sweep may be up to a second late)."""
        async def expire() -> None:
            await asyncio.sleep(delay + 0.05)  # timers may fire a clock tick early
            try:
                await self.backend.expire()
            except Exception:  # pragma: no cover - the regular sweep tries again
                logger.exception("expiring suspended peers failed")

        task = asyncio.create_task(expire())
        self.timers.add(task)
        task.add_done_callback(self.timers.discard)


class _Connection:
    """One WebSocket: a read loop that validates and dispatches, and a writer task."""

    def __init__(self, ws: WebSocket, shared: _AppState) -> None:
        self.ws = ws
        self.shared = shared
        self.settings = shared.settings
        self.backend = shared.backend
        self.peer_id: str | None = None
        self.outbox: asyncio.Queue[object] = asyncio.Queue()
        self.rate = TokenBucket(self.settings.rate, self.settings.burst)
        self.strikes = TokenBucket(1.0, self.settings.max_strikes)
        self.close_code: int | None = None
        self.close_reason = ""
        self.resumable = True

    # --- output ---

    def deliver(self, frame: str) -> None:
        """Queue one frame for the writer (called by the backend too; never blocks)."""
        if self.close_code is not None:
            return
        if self.outbox.qsize() >= MAX_OUTBOX:
            logger.warning("%s is too slow to read its messages; closing", self.peer_id)
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.close_code, self.close_reason = status.WS_1008_POLICY_VIOLATION, "too slow"
            self.outbox.put_nowait(_CLOSE)
            return
        self.outbox.put_nowait(frame)

    def reply_error(self, code: ErrorCode, message: str, request_id: int | None) -> None:
        self.deliver(encode(Error(id=request_id, code=code, message=message)))
        if code in ABUSE and not self.strikes.take():
            self.resumable = False
            raise _Closing(status.WS_1008_POLICY_VIOLATION, "too many bad messages")

    async def _write(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if item is _CLOSE:
                    if self.close_code is not None:
                        await self.ws.close(self.close_code, self.close_reason)
                    return
                assert isinstance(item, str)
                await self.ws.send_text(item)
        except Exception as exc:  # the client went away mid-send
            logger.debug("send to %s failed: %r", self.peer_id, exc)

    # --- the connection's life ---

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        reason: LeaveReason = "disconnected"
        self.shared.open_connections += 1
        try:
            reason = await self._read()
        except _Closing as closing:
            self.close_code, self.close_reason = closing.code, closing.reason
        finally:
            self.shared.open_connections -= 1
            await self._detach(reason)
            self.outbox.put_nowait(_CLOSE)
            try:
                await asyncio.wait_for(writer, timeout=5)
            except TimeoutError:  # pragma: no cover - client stopped reading
                pass

    async def _detach(self, reason: LeaveReason) -> None:
        if self.peer_id is None:
            return
        if self.shared.connections.get(self.peer_id) is self:
            del self.shared.connections[self.peer_id]
            grace = self.settings.resume_grace if self.resumable else 0.0
            await self.backend.disconnect(self.peer_id, reason, grace)
            if grace > 0:  # if it hosted a lobby, the role moves on this soon
                self.shared.expire_after(min(self.backend.host_grace, grace))

    async def _read(self) -> LeaveReason:
        idle = self.settings.idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle):
                    message = await self.ws.receive()
            except TimeoutError:
                logger.info("%s sent nothing for %g s; dropping it", self.peer_id or "a client",
                            idle)
                self.close_code = status.WS_1001_GOING_AWAY
                self.close_reason = "idle timeout"
                return "timed_out"
            if message["type"] == "websocket.disconnect":
                code = message.get("code") or status.WS_1005_NO_STATUS_RCVD
                return "left" if code in (status.WS_1000_NORMAL_CLOSURE,
                                          status.WS_1001_GOING_AWAY) else "disconnected"
            await self._receive(message.get("text"), message.get("bytes"))
            if self.close_code is not None:  # the writer gave up on a slow reader
                return "disconnected"

    async def _receive(self, text: str | None, data: bytes | None) -> None:
        if text is None:
            size = len(data or b"")
            if size > self.settings.max_message_bytes:
                self.reply_error(ErrorCode.TOO_LARGE, f"frame of {size} bytes is larger than "
                                 f"{self.settings.max_message_bytes}", None)
            else:
                self.reply_error(ErrorCode.BAD_MESSAGE, "frames must be JSON text, not binary",
                                 None)
            return
        limit = self.settings.max_message_bytes
        if len(text) > limit // 4 and (size := len(text.encode())) > limit:
            self.reply_error(ErrorCode.TOO_LARGE,
                             f"message of {size} bytes is larger than {limit}", None)
            return
        if not self.rate.take():
            self.reply_error(ErrorCode.RATE_LIMITED,
                             f"more than {self.settings.rate:g} messages per second; slow down",
                             request_id_of(text))
            return
        try:
            request = parse_client(text)
        except ProtocolError as exc:
            version = hello_version_of(text)
            if self.peer_id is None and version is not None and version != PROTOCOL_VERSION:
                # Another version's hello may have other fields: still name both versions.
                self._refuse_version(version, request_id_of(text))
            self.reply_error(ErrorCode.BAD_MESSAGE, str(exc), request_id_of(text))
            return
        try:
            await self._dispatch(request)
        except LobbyError as exc:
            self.reply_error(exc.code, exc.message, request.id)
        except _Closing:
            raise
        except Exception:
            logger.exception("error handling %s from %s", request.type, self.peer_id)
            self.reply_error(ErrorCode.INTERNAL, "internal server error", request.id)

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
        match request:
            case Host():
                await backend.host(peer_id, request)
            case Join():
                await backend.join(peer_id, request)
            case QuickMatch():
                await backend.quick_match(peer_id, request)
            case ListLobbies():
                lobbies = await backend.list_lobbies(request.game, request.filter)
                self.deliver(encode(LobbyList(id=request.id, lobbies=lobbies)))
            case Leave():
                await backend.leave(peer_id, request.id)
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
        self.peer_id = None
        self.close_code, self.close_reason = ((status.WS_1012_SERVICE_RESTART, "session lost")
                                              if lost else (status.WS_1008_POLICY_VIOLATION,
                                                            "resumed elsewhere"))
        self.outbox.put_nowait(_CLOSE)

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


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Starlette:
    """The lobby server as an ASGI app (``uvicorn.run(create_app(settings))``)."""
    settings = settings or Settings()
    if backend is None:
        backend = backend_for(settings)
    state = _AppState(settings, backend)

    def evict(peer_id: str, lost: bool) -> None:  # see Backend.on_evict
        connection = state.connections.pop(peer_id, None)
        if connection is not None:
            connection.retire(lost=lost)

    backend.on_evict = evict
    origins = frozenset(settings.allowed_origins)

    async def websocket_endpoint(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origins and "*" not in origins and origin is not None and origin not in origins:
            logger.info("refused a WebSocket from origin %r", origin)
            await ws.close(status.WS_1008_POLICY_VIOLATION)
            return
        await ws.accept()
        await _Connection(ws, state).run()

    async def healthz(request: Request) -> JSONResponse:
        reason = await backend.health()
        if reason is None:
            try:
                counts = await backend.stats()
            except Exception as exc:  # the backend's storage failed between the two calls
                reason = f"{type(exc).__name__}: {exc}"
            else:
                return JSONResponse({"status": "ok", "connections": state.open_connections,
                                     **counts})
        return JSONResponse({"status": "unavailable", "reason": reason,
                             "connections": state.open_connections}, status_code=503)

    async def lobbies(request: Request) -> JSONResponse:
        try:
            found = await backend.list_lobbies(request.query_params.get("game") or None)
        except LobbyError as exc:  # the backend's storage is unreachable
            return JSONResponse({"error": exc.code.value, "message": exc.message},
                                status_code=503)
        return JSONResponse({"lobbies": [s.model_dump(mode="json") for s in found]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Expire seats a little after their grace ends (none are held when grace is 0).
        interval = max(0.05, min(1.0, settings.resume_grace / 4)) if settings.resume_grace else 1.0

        async def sweep() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await backend.expire()
                except Exception:  # pragma: no cover - keep sweeping
                    logger.exception("expiring suspended peers failed")

        await backend.start()
        sweeper = asyncio.create_task(sweep())
        try:
            yield
        finally:
            for task in (sweeper, *state.timers):
                task.cancel()
            await asyncio.gather(sweeper, *state.timers, return_exceptions=True)
            await backend.close()

    app = Starlette(
        routes=[
            WebSocketRoute("/ws", websocket_endpoint),
            Route("/healthz", healthz),
            Route("/lobbies", lobbies),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend = backend
    return app


def backend_for(settings: Settings) -> Backend:
    """The backend ``settings`` ask for: Redis with ``redis_url``, else this process's memory."""
    if settings.redis_url:
        from .redis_backend import RedisBackend  # imported only when used

        return RedisBackend(settings.redis_url, prefix=settings.redis_prefix,
                            max_lobbies=settings.max_lobbies,
                            max_metadata_bytes=settings.max_metadata_bytes,
                            grace=settings.resume_grace)
    return MemoryBackend(max_lobbies=settings.max_lobbies,
                         max_metadata_bytes=settings.max_metadata_bytes)


def create_app_from_env() -> Starlette:
    """``create_app`` with settings from ``NETPLAY_LOBBY_*`` variables: what each worker
    process of ``netplay-lobby --workers N`` runs."""
    from .__main__ import configure_logging

    settings = Settings.from_env()
    configure_logging(settings)
    return create_app(settings)

