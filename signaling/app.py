"""The Starlette app: accepts lobby WebSockets and serves two HTTP routes.

Routes
    ``/ws``        the lobby protocol (``netplay.protocol``), one JSON text frame per message
    ``/healthz``   ``{"status": "ok", "connections": ..., "lobbies": ..., ...}``; 503
                   ``{"status": "unavailable", "reason": ...}`` while the backend cannot serve
                   (its Redis is unreachable)
    ``/lobbies``   public open lobbies as JSON, ``?game=`` to filter (a token when the lobby
                   has an auth secret; CORS headers for ``allowed_origins``)

A WebSocket is checked against the origin list and its address's connection limit here, then
run by :class:`signaling.connection.AsgiConnection` (per-frame checks, then the backend). On
uvicorn with ``ws=signaling.direct.LobbyWebSocketProtocol`` (what ``netplay-lobby`` runs unless
``--ws-impl asgi``), ``/ws`` never reaches this app: ``signaling.direct`` serves it on the
socket, with the same checks, and finds the lobby in the lifespan state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette import status
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from netplay.protocol import Error, ErrorCode, encode

from .auth import verify_token
from .connection import AsgiConnection, ServerState, ice_servers, where
from .direct import STATE_KEY, DirectLobby
from .limits import TokenBucket
from .lobby import Backend, LobbyError, MemoryBackend
from .play import play_routes
from .settings import Settings

__all__ = ["TokenBucket", "backend_for", "create_app", "create_app_from_env", "ice_servers"]

logger = logging.getLogger("signaling")


class _LobbyApp(Starlette):
    """Starlette for the HTTP routes; a WebSocket to ``/ws`` goes straight to the lobby.

    Through Starlette's middleware and router, every frame a connection receives would resume
    about ten more coroutine frames (each middleware, the router, the route, the session
    wrapper); the relay's hot path skips them. ``/ws`` under a ``root_path`` still reaches the
    lobby through the router.
    """

    def __init__(self, serve: Callable[[WebSocket, Receive, Send], Awaitable[None]],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.serve_websocket = serve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await self.serve_websocket(WebSocket(scope, receive, send), receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Starlette:
    """The lobby server as an ASGI app (``uvicorn.run(create_app(settings))``)."""
    settings = settings or Settings()
    if backend is None:
        backend = backend_for(settings)
    state = ServerState(settings, backend)
    origins = frozenset(settings.allowed_origins)
    limits = state.limits

    async def websocket_endpoint(ws: WebSocket) -> None:  # reached through the router
        await serve_websocket(ws, ws.receive, ws.send)

    async def serve_websocket(ws: WebSocket, receive: Receive, send: Send) -> None:
        address = ws.client.host if ws.client else "unknown"
        counted = False
        try:
            origin = ws.headers.get("origin")
            if origins and "*" not in origins and origin is not None and origin not in origins:
                state.warn.warn("origin", "refused a WebSocket from origin %r", origin)
                # Accept, then close with a reason: a refused handshake (HTTP 403) reaches a
                # page only as a generic error, a close frame as code 1008 and this reason.
                await ws.accept()
                await ws.close(status.WS_1008_POLICY_VIOLATION, reason="origin not allowed")
                return
            await ws.accept()
            if not limits.connect(address):
                state.warn.warn("connections", "refused a connection from %s: it already has "
                                "%d open", address, settings.max_connections_per_ip)
                await _refuse_connection(ws, f"too many connections from your address (at "
                                         f"most {settings.max_connections_per_ip}); try again "
                                         f"later")
                return
            counted = True
            await AsgiConnection(ws, state, address, receive, send).run()
        except Exception as exc:  # never a traceback in the log, whatever the client did
            state.errors.warn(("websocket", type(exc)), "a WebSocket from %s failed: %r at %s",
                              address, exc, where(exc))
        finally:
            if counted:
                limits.disconnect(address)

    def evict(peer_id: str, lost: bool) -> None:  # see Backend.on_evict
        connection = state.connections.pop(peer_id, None)
        if connection is not None:
            connection.retire(lost=lost)

    backend.on_evict = evict

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
        if settings.auth_secret:
            refused = _check_http_token(request, settings.auth_secret)
            if refused is not None:
                return refused
        try:
            found = await backend.list_lobbies(request.query_params.get("game") or None)
        except LobbyError as exc:  # the backend's storage is unreachable
            return JSONResponse({"error": exc.code.value, "message": exc.message},
                                status_code=503)
        return JSONResponse({"lobbies": [s.model_dump(mode="json") for s in found]})

    direct = DirectLobby(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Expire seats a little after their grace ends (none are held when grace is 0).
        interval = max(0.05, min(1.0, settings.resume_grace / 4)) if settings.resume_grace else 1.0

        async def sweep() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await backend.expire()
                except Exception as exc:  # pragma: no cover - keep sweeping
                    state.errors.warn("sweep", "expiring suspended peers failed: %r at %s",
                                      exc, where(exc))
                limits.prune()

        await backend.start()
        sweeper = asyncio.create_task(sweep())
        try:
            # In the lifespan state (uvicorn's app_state): how signaling.direct's WebSocket
            # protocol, below the app, finds this lobby.
            yield {STATE_KEY: direct}
        finally:
            for task in (sweeper, *state.timers):
                task.cancel()
            await asyncio.gather(sweeper, *state.timers, return_exceptions=True)
            await backend.close()

    app = _LobbyApp(
        serve_websocket,
        routes=[
            WebSocketRoute("/ws", websocket_endpoint),
            Route("/healthz", healthz),
            Route("/lobbies", lobbies),
            *play_routes(),  # the browser demo at /play (signaling/play.py)
        ],
        lifespan=lifespan,
        middleware=_cors(settings),
    )
    app.state.settings = settings
    app.state.backend = backend
    return app


async def _refuse_connection(ws: WebSocket, message: str) -> None:
    """Answer an accepted connection over its address's limit: ``rate_limited``, close 1013."""
    try:
        await ws.send_text(encode(Error(code=ErrorCode.RATE_LIMITED, message=message)))
        await ws.close(status.WS_1013_TRY_AGAIN_LATER, "too many connections")
    except Exception as exc:  # the client went away first
        logger.debug("refusing a connection failed: %r", exc)


def _check_http_token(request: Request, secret: str) -> JSONResponse | None:
    """``None`` when the request carries a valid auth token (``Authorization: Bearer TOKEN``
    or ``?token=TOKEN``), else the 401 answer."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = request.query_params.get("token", "")
    if not token.strip():
        code, message = ErrorCode.NOT_AUTHENTICATED, "this lobby needs an auth token"
    else:
        try:
            verify_token(secret, token.strip())
            return None
        except LobbyError as exc:
            code, message = exc.code, exc.message
    return JSONResponse({"error": code.value, "message": message}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


def _cors(settings: Settings) -> list[Middleware]:
    """CORS for the HTTP routes (``GET /lobbies``) from ``allowed_origins``; none when empty."""
    if not settings.allowed_origins:
        return []
    return [Middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),
                       allow_methods=["GET"], allow_headers=["Authorization"], max_age=600)]


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
