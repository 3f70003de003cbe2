"""LobbyClient: the game's WebSocket connection to the lobby server (``signaling/``).

It speaks :mod:`netplay.protocol`: ``hello``/``welcome`` on connect, requests with an ``id``
answered by a reply carrying the same ``id``, and unsolicited messages (``peer_joined``,
``peer_left``, ``host_changed``, ``lobby``, ``signal``) handed to ``on_message``.

When the socket drops after a successful connect, the client keeps reconnecting in the
background (backoff from ``reconnect_delay`` doubling to 5 s) and sends its resume token, so the
lobby gives back the same peer id and seat. Peer connections never depend on this socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from . import protocol as p
from .errors import LobbyDisconnected, LobbyRejected, LobbyUnavailable, ProtocolError

__all__ = ["LobbyClient"]

logger = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 5.0
MAX_FRAME = 256 * 1024


class LobbyClient:
    """One session with the lobby server. Create, ``await connect()``, ``await close()``."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        on_message: Callable[[p.ServerMessage], None],
        on_connection: Callable[[bool, p.Welcome | None], None],
        token: str | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        reconnect_delay: float = 0.25,
        ping_interval: float = 10.0,
    ) -> None:
        self.url = url
        self.name = name
        self.token = token
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.reconnect_delay = reconnect_delay
        self.ping_interval = ping_interval
        self.pings_sent = 0
        """Protocol ``ping``s sent so far (the lobby drops connections that stay silent)."""
        self.reconnects = 0
        """How many times the connection was lost and re-established."""
        self._on_message = on_message
        self._on_connection = on_connection
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[p.ServerMessage]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.welcome: p.Welcome | None = None

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open and welcomed."""
        return self._ws is not None

    @property
    def peer_id(self) -> str | None:
        """Our server-assigned peer id (``None`` before the first welcome)."""
        return None if self.welcome is None else self.welcome.peer_id

    async def connect(self) -> p.Welcome:
        """Open the socket and say hello. Raises ``LobbyUnavailable`` or ``LobbyRejected``."""
        if self._task is not None or self._closed:
            raise RuntimeError("LobbyClient.connect() can be called once")
        ws, welcome = await self._open(resume=None)
        self._install(ws, welcome)
        self._task = asyncio.create_task(self._run(ws), name="netplay-lobby")
        return welcome

    async def _open(self, resume: str | None) -> tuple[ClientConnection, p.Welcome]:
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await connect(self.url, open_timeout=None, ping_interval=5,
                                   ping_timeout=10, close_timeout=2, max_size=MAX_FRAME)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            why = _why_unreachable(exc, self.connect_timeout)
            raise LobbyUnavailable(f"cannot reach the lobby at {self.url}: {why}") from exc
        try:
            async with asyncio.timeout(self.connect_timeout):
                hello = p.Hello(v=p.PROTOCOL_VERSION, name=self.name, token=self.token,
                                resume=resume)
                await ws.send(p.encode(hello))
                reply = p.parse_server(await ws.recv())
        except (ConnectionClosed, TimeoutError, ProtocolError) as exc:
            await ws.close()
            raise LobbyUnavailable(f"the lobby at {self.url} refused the handshake: {exc}") \
                from exc
        except BaseException:
            await ws.close()
            raise
        if isinstance(reply, p.Error):
            await ws.close()
            raise LobbyRejected(reply.code.value, reply.message)
        if not isinstance(reply, p.Welcome):
            await ws.close()
            raise LobbyUnavailable(f"the lobby answered hello with {reply.type!r}")
        return ws, reply

    def _install(self, ws: ClientConnection, welcome: p.Welcome) -> None:
        self._ws = ws
        self.welcome = welcome
        logger.info("lobby %s: connected as %s%s", self.url, welcome.peer_id,
                    " (resumed)" if welcome.resumed else "")

    async def _run(self, ws: ClientConnection) -> None:
        delay = self.reconnect_delay
        while True:
            keepalive = asyncio.create_task(self._keepalive(ws), name="netplay-lobby-ping")
            try:
                await self._read(ws)
            finally:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
            self._ws = None
            self._fail_pending(LobbyDisconnected("the lobby connection was lost"))
            if self._closed:
                return
            logger.info("lobby %s: connection lost; reconnecting", self.url)
            self._on_connection(False, None)
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
                token = self.welcome.resume_token if self.welcome else None
                try:
                    ws, welcome = await self._open(resume=token)
                except LobbyRejected as exc:
                    logger.info("lobby %s: resume refused (%s); starting a new session",
                                self.url, exc.code)
                    try:
                        ws, welcome = await self._open(resume=None)
                    except (LobbyUnavailable, LobbyRejected):
                        continue
                except LobbyUnavailable as exc:
                    logger.debug("lobby reconnect failed: %s", exc)
                    continue
                break
            delay = self.reconnect_delay
            self.reconnects += 1
            self._install(ws, welcome)
            self._on_connection(True, welcome)

    async def _keepalive(self, ws: ClientConnection) -> None:
        # WebSocket-level pings are invisible to the lobby app, which drops a connection that
        # sends no protocol message for its idle_timeout; an idle game in a lobby must ping.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await ws.send(p.encode(p.Ping(t=loop.time())))
            except ConnectionClosed:
                return
            self.pings_sent += 1

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                try:
                    message = p.parse_server(frame)
                except ProtocolError as exc:
                    logger.warning("lobby sent a bad message: %s", exc)
                    continue
                rid = getattr(message, "id", None)
                future = self._pending.pop(rid, None) if rid is not None else None
                if future is not None and not future.done():
                    future.set_result(message)
                    if not isinstance(message, p.LobbyState):
                        continue
                try:
                    self._on_message(message)
                except Exception:  # never let a handler kill the lobby connection
                    logger.exception("error handling lobby message %s", message.type)
        except ConnectionClosed:
            pass

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    async def send(self, message: BaseModel) -> None:
        """Send without waiting for a reply. Raises ``LobbyDisconnected`` when offline."""
        ws = self._ws
        if ws is None:
            raise LobbyDisconnected("not connected to the lobby")
        try:
            await ws.send(p.encode(message))
        except ConnectionClosed as exc:
            raise LobbyDisconnected("the lobby connection was lost") from exc

    async def request(self, message: BaseModel) -> Any:
        """Send a request and return the lobby's reply (a protocol message).

        Raises ``LobbyRejected`` when the lobby answers with an error, ``LobbyDisconnected`` when
        the connection drops or the lobby doesn't answer within ``request_timeout``.
        """
        rid = next(self._ids)
        message = message.model_copy(update={"id": rid})
        future: asyncio.Future[p.ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self.send(message)
            async with asyncio.timeout(self.request_timeout):
                reply = await future
        except TimeoutError as exc:
            raise LobbyDisconnected(
                f"the lobby did not answer {getattr(message, 'type', '?')!r} "
                f"within {self.request_timeout} s"
            ) from exc
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, p.Error):
            raise LobbyRejected(reply.code.value, reply.message)
        return reply

    async def close(self) -> None:
        """Close the socket and stop reconnecting. Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ws = None
        self._fail_pending(LobbyDisconnected("the lobby client was closed"))


def _why_unreachable(exc: BaseException, timeout: float) -> str:
    """What went wrong opening the lobby socket, and what to check (one line)."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (403, 404):
            return (f"the server refused the WebSocket with HTTP {status}: is the path right? "
                    "netplay-lobby serves players at /ws, e.g. ws://HOST:PORT/ws")
        return f"the server refused the WebSocket with HTTP {status}"
    if isinstance(exc, InvalidURI):
        return f"not a valid ws:// or wss:// URL ({exc})"
    if isinstance(exc, TimeoutError):
        return (f"no answer within {timeout:g} s (MeshConfig.connect_timeout): is the host "
                "right, and is a firewall dropping the port?")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is netplay-lobby running on that host and port?"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
