"""Mesh: the async facade. Owns the lobby client and one :class:`Remote` per other member.

```python
async with netplay.Mesh(config) as mesh:
    info = await mesh.host(game="squares")          # or join(code) / quick_match(game=...)
    await mesh.wait_for_peers(1, timeout=10)
    mesh.send_state({"x": 1})                        # unreliable, newest wins, never blocks
    mesh.send_event({"t": "hit"})                    # reliable, ordered, exactly once
    async for ev in mesh.events(): ...
```

The lobby only introduces peers: when it goes away, links keep working and the lobby client
reconnects in the background with its resume token. Data-plane details live in
:mod:`netplay.dataplane`, link supervision in :mod:`netplay.remote`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiortc import RTCIceServer

from . import _aiortc
from . import protocol as p
from ._ratelimit import WarnLimiter
from .channels import Channel
from .conditioner import ConditionerConfig
from .config import MeshConfig
from .dataplane import DataPlane
from .errors import ChannelClosed, PeersNotConnected, ProtocolError, SignalingError
from .events import (
    Event,
    HostChanged,
    LeaveReason,
    LobbyConnectionChanged,
    LobbyUpdated,
    MessagesUndelivered,
)
from .eventstream import EventStream
from .lobby_client import LobbyClient
from .remote import Leave, LobbyBack, Remote, Signal, supervise
from .stats import PeerStats
from .types import PeerId

__all__ = ["Mesh"]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


class _State(enum.Enum):
    UNOPENED = 1
    OPEN = 2
    CLOSED = 3


class Mesh:
    """A session: lobby connection plus a full WebRTC mesh. Open once, close once.

    It owns its parts: the lobby client, the :class:`~netplay.dataplane.DataPlane` (peers,
    channels, datagrams), the :class:`~netplay.eventstream.EventStream`, and one supervisor
    task per peer (:func:`~netplay.remote.supervise`), which sees the session only through
    :class:`_Links`.
    """

    def __init__(self, config: MeshConfig) -> None:
        if not isinstance(config, MeshConfig):
            raise TypeError(f"Mesh needs a MeshConfig, got {type(config).__name__}")
        if config.ice_host_addresses is not None:
            # ValueError (or RuntimeError: aioice cannot pin) now, not later
            _aiortc.validate_host_addresses(config.ice_host_addresses)
        self.config = config
        self._status = _State.UNOPENED
        self._stream = EventStream(config.max_queued, self._is_open)
        self._plane = DataPlane(config, emit=self._stream.emit, check_open=self._check_open,
                                on_alias=self._on_alias)
        self._links = _Links(self)
        self._lobby: LobbyClient | None = None
        self._welcome: p.Welcome | None = None
        self._info: p.LobbyInfo | None = None
        self._lobby_up: asyncio.Event | None = None
        self._peer_id: PeerId | None = None
        self._aliases: dict[PeerId, PeerId] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._lobby_warnings = WarnLimiter(logger)
        self._leaving = False  # True while leave() runs: closing links are not re-offered

    @property
    def _remotes(self) -> dict[PeerId, Remote]:
        return self._plane.remotes

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Mesh:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect to the lobby (``hello``/``welcome``). Raises ``LobbyUnavailable``."""
        if self._status is not _State.UNOPENED:
            raise RuntimeError("a Mesh can be opened only once; create a new Mesh instead")
        self._status = _State.OPEN
        self._lobby_up = asyncio.Event()
        self._lobby = LobbyClient(
            self.config.lobby_url, self.config.name, token=self.config.auth_token,
            on_message=self._on_lobby_message, on_connection=self._on_lobby_connection,
            connect_timeout=self.config.connect_timeout,
            request_timeout=self.config.request_timeout,
            reconnect_delay=self.config.lobby_reconnect_delay,
            ping_interval=self.config.lobby_ping_interval,
        )
        try:
            welcome = await self._lobby.connect()
        except BaseException:
            self._status = _State.CLOSED
            raise
        self._welcome = welcome
        self._peer_id = welcome.peer_id
        self._lobby_up.set()
        self._plane.start()

    async def close(self) -> None:
        """Say goodbye to every peer, leave the lobby, close everything. Idempotent."""
        if self._status is not _State.OPEN:
            self._status = _State.CLOSED
            return
        self._status = _State.CLOSED
        await self._plane.say_bye(list(self._remotes.values()), "left")
        lobby = self._lobby
        if lobby is not None and lobby.connected and self._info is not None:
            try:
                await asyncio.wait_for(lobby.request(p.Leave()), 1.0)
            except Exception as exc:
                logger.debug("leave on close: %s", exc)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._drop_remotes(list(self._remotes), None)
        await self._plane.stop()
        if lobby is not None:
            await lobby.close()
        self._stream.wake()
        logger.info("mesh closed")

    def _check_open(self) -> LobbyClient:
        if self._status is _State.UNOPENED:
            raise RuntimeError("the Mesh is not open yet: use 'async with Mesh(config)'")
        if self._status is _State.CLOSED or self._lobby is None:
            raise ChannelClosed("the Mesh is closed")
        return self._lobby

    def _lobby_client(self) -> LobbyClient:
        return self._check_open()

    def _is_open(self) -> bool:
        return self._status is _State.OPEN

    # -- properties -----------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        """Our peer id: the one the lobby gave us first. It stays the same for the whole
        session, even when a restarted lobby knows us by another (:attr:`lobby_peer_id`)."""
        if self._peer_id is None:
            raise RuntimeError("the Mesh is not open yet: use 'async with Mesh(config)'")
        return self._peer_id

    @property
    def lobby_peer_id(self) -> PeerId | None:
        """The id the lobby knows us by now (equal to :attr:`peer_id` unless the lobby
        restarted and forgot us); ``None`` while the lobby is unreachable."""
        return self._lobby.peer_id if self._lobby is not None and self._lobby.connected \
            else None

    @property
    def peers(self) -> list[PeerId]:
        """Ids of the peers connected right now (channels open)."""
        return [r.id for r in self._plane.live]

    @property
    def lobby(self) -> p.LobbyInfo | None:
        """The current lobby state, or ``None`` outside a lobby."""
        return self._info

    @property
    def is_host(self) -> bool:
        """True when we host the current lobby."""
        return self._info is not None and self._lobby is not None \
            and self._info.host == self._lobby.peer_id

    def _key(self, lobby_id: PeerId) -> PeerId:
        """Our name for the peer the lobby calls ``lobby_id`` (see ALIAS in netplay.wire)."""
        return self._aliases.get(lobby_id, lobby_id)

    @property
    def lobby_connected(self) -> bool:
        """True while the WebSocket to the lobby is up (peers work either way)."""
        return self._lobby is not None and self._lobby.connected

    def channel(self, name: str) -> Channel:
        """The configured channel called ``name``; ``UnknownChannel`` if none."""
        return self._plane.channel(name)

    # -- events ---------------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Every event, oldest first, including those that happened before; ends on close."""
        return self._stream.events()

    async def wait_for(self, kind: type[E], timeout: float | None = 10.0,
                       where: Callable[[E], bool] | None = None) -> E:
        """The first unread event of type ``kind`` (matching ``where``), waiting if needed.

        Other events stay queued for :meth:`events`. ``TimeoutError`` after ``timeout`` s,
        ``ChannelClosed`` if the mesh closes meanwhile.
        """
        return await self._stream.wait_for(kind, timeout, where)

    async def wait_for_peers(self, n: int, timeout: float | None = 10.0) -> list[PeerId]:
        """Wait until at least ``n`` peers are connected; returns their ids.

        ``PeersNotConnected`` (a ``TimeoutError``) after ``timeout`` s says which peers failed
        and why; ``ChannelClosed`` if the mesh closes.
        """
        try:
            await self._stream.wait_until(lambda: len(self._plane.live) >= n, timeout)
        except TimeoutError:
            failures = {r.id: r.failure for r in self._remotes.values() if r.failure}
            raise PeersNotConnected(n, self.peers, failures, timeout) from None
        return self.peers

    # -- data (see netplay.dataplane) -----------------------------------------------------

    def send_state(self, state: Any, to: PeerId | None = None, *, tick: int | None = None
                   ) -> bool:
        """Send ``state`` unreliably to ``to`` or every connected peer; newest wins.

        Never blocks; see :meth:`DataPlane.send_state <netplay.dataplane.DataPlane.send_state>`.
        Returns False when no connected peer was addressed. Raises ``MessageTooLarge`` for a
        state over one datagram and ``TypeError`` for a value msgpack can't encode.
        """
        return self._plane.send_state(state, to, tick=tick)

    def send_event(self, event: Any, to: PeerId | None = None) -> bool:
        """Send ``event`` reliably (ordered, exactly once) to ``to`` or every peer.

        Never blocks. False when nobody was addressed. Raises ``MessageTooLarge`` over
        ``MeshConfig.max_message_size`` and ``TypeError`` for a value msgpack can't encode.
        """
        return self._plane.send_event(event, to)

    def states(self) -> dict[PeerId, Any]:
        """The newest state received from each connected peer."""
        return self._plane.states()

    def interpolated(self, now: float | None = None) -> dict[PeerId, Any]:
        """Each connected peer's state for rendering at ``now`` (default: the current
        ``time.monotonic()``): interpolated a little in the past, extrapolated a little when
        snapshots stop. Peers with no snapshot yet are left out."""
        return self._plane.interpolated(now)

    def stats(self, peer: PeerId) -> PeerStats:
        """The net_graph of one peer (RTT, jitter, loss, rates, ...); ``KeyError`` if unknown."""
        return self._plane.stats(peer)

    def all_stats(self) -> dict[PeerId, PeerStats]:
        """:meth:`stats` of every connected peer."""
        return self._plane.all_stats()

    def set_conditioner(self, config: ConditionerConfig | None, peer: PeerId | None = None
                        ) -> None:
        """Impair links (both directions) from now on: every peer's, or only ``peer``'s.

        ``None`` turns it off. Existing links change at once; new links use it too.
        """
        self._plane.set_conditioner(config, peer)

    # -- lobby requests -------------------------------------------------------------------

    async def _enter(self, request: Any) -> p.LobbyInfo:
        lobby = self._check_open()
        if self._info is not None:
            raise RuntimeError(f"already in lobby {self._info.code}; call leave() first")
        reply = await lobby.request(request)
        if not isinstance(reply, p.LobbyState):
            raise ProtocolError(f"the lobby answered {request.type!r} with {reply.type!r}")
        return reply.lobby

    async def host(self, game: str, game_version: str = "", *, max_players: int = 8,
                   public: bool = True, password: str | None = None,
                   metadata: dict[str, Any] | None = None) -> p.LobbyInfo:
        """Create a lobby and become its host; returns its state (``.code`` to share)."""
        return await self._enter(p.Host(game=game, game_version=game_version,
                                        max_players=max_players, public=public,
                                        password=password, metadata=metadata or {}))

    async def join(self, code: str, password: str | None = None) -> p.LobbyInfo:
        """Join a lobby by its code. Raises ``LobbyRejected`` (``.code``: lobby_not_found, ...)."""
        return await self._enter(p.Join(code=code, password=password))

    async def quick_match(self, game: str, game_version: str = "", *, max_players: int = 8,
                          filter: dict[str, Any] | None = None) -> p.LobbyInfo:
        """Join the fullest open public lobby for this game, or create one."""
        return await self._enter(p.QuickMatch(game=game, game_version=game_version,
                                              max_players=max_players, filter=filter or {}))

    async def list_lobbies(self, game: str | None = None,
                           filter: dict[str, Any] | None = None) -> list[p.LobbySummary]:
        """Open public lobbies, fullest first."""
        reply = await self._check_open().request(p.ListLobbies(game=game, filter=filter or {}))
        if not isinstance(reply, p.LobbyList):
            raise ProtocolError(f"the lobby answered 'list_lobbies' with {reply.type!r}")
        return reply.lobbies

    async def leave(self) -> None:
        """Leave the lobby and disconnect from every peer (the session stays open)."""
        lobby = self._check_open()
        if self._info is None:
            return
        # From now on links that close are not re-offered, so no signal races our Leave
        # (the lobby would answer each with "not_in_lobby").
        self._leaving = True
        try:
            await self._plane.say_bye(list(self._remotes.values()), "left")
            await lobby.request(p.Leave())
            await self._left_lobby("left")
        finally:
            self._leaving = False

    async def kick(self, peer: PeerId) -> None:
        """Host only: remove ``peer`` from the lobby (it sees itself kicked)."""
        r = self._remotes.get(peer)
        await self._check_open().request(p.Kick(peer=r.lobby_id if r is not None else peer))

    async def lock(self) -> None:
        """Host only: refuse new joins."""
        await self._check_open().request(p.Lock())

    async def unlock(self) -> None:
        """Host only: accept new joins again."""
        await self._check_open().request(p.Unlock())

    async def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Host only: replace the lobby's metadata (shown in listings)."""
        await self._check_open().request(p.SetMetadata(metadata=metadata))

    # -- lobby messages -------------------------------------------------------------------

    def _me(self) -> p.Member | None:
        if self._info is None or self._lobby is None:
            return None
        return next((m for m in self._info.members if m.id == self._lobby.peer_id), None)

    def _set_lobby(self, info: p.LobbyInfo | None) -> None:
        old = self._info
        self._info = info
        if info is not None and old is not None and old.host != info.host:
            self._stream.emit(HostChanged(self._key(info.host),
                                   info.host == self._lobby_client().peer_id))
        self._stream.emit(LobbyUpdated(info))
        self._reconcile()

    def _on_lobby_message(self, message: p.ServerMessage) -> None:
        if self._status is not _State.OPEN:
            return
        info = self._info
        if isinstance(message, p.LobbyState):
            self._set_lobby(message.lobby)
        elif isinstance(message, p.RelayedSignal):
            key = self._key(message.from_)
            r = self._remotes.get(key) or self._add_remote(key, None, False)
            r.inbox.put_nowait(Signal(message.payload))
        elif isinstance(message, p.PeerJoined) and info is not None:
            members = [m for m in info.members if m.id != message.peer.id] + [message.peer]
            self._set_lobby(info.model_copy(update={"members": members}))
        elif isinstance(message, p.PeerLeft) and info is not None:
            if message.peer_id == self._lobby_client().peer_id:
                task = asyncio.ensure_future(self._left_lobby(message.reason))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return
            key = self._key(message.peer_id)
            gone = self._remotes.pop(key) if key in self._remotes else None
            if gone is not None:
                gone.inbox.put_nowait(Leave(message.reason))
            members = [m for m in info.members if m.id != message.peer_id]
            self._set_lobby(info.model_copy(update={"members": members}))
        elif isinstance(message, p.HostChanged) and info is not None:
            self._set_lobby(info.model_copy(update={"host": message.host}))
        elif isinstance(message, p.Error):
            # Errors without a request id answer our signals. Expected, so DEBUG: unknown_peer
            # (the peer left while we re-offered) and not_in_lobby once we have left ourselves.
            expected = message.code is p.ErrorCode.UNKNOWN_PEER or (
                message.code is p.ErrorCode.NOT_IN_LOBBY and (info is None or self._leaving))
            if expected:
                logger.debug("lobby error: %s (%s)", message.message, message.code.value)
            else:
                self._lobby_warnings.warn(message.code, "lobby error: %s (%s)", message.message,
                                          message.code.value)

    def _on_lobby_connection(self, connected: bool, welcome: p.Welcome | None) -> None:
        lobby_up = self._lobby_up
        if lobby_up is None:
            return
        if not connected or welcome is None:
            lobby_up.clear()
            self._stream.emit(LobbyConnectionChanged(False, False))
            return
        self._welcome = welcome
        lobby_up.set()
        self._stream.emit(LobbyConnectionChanged(True, welcome.resumed))
        for r in self._remotes.values():  # a signal sent as the lobby went away may be lost
            r.inbox.put_nowait(LobbyBack())
        if welcome.resumed:
            if welcome.lobby is not None:
                self._set_lobby(welcome.lobby)
        elif self._info is not None:
            # The lobby forgot us (restarted, or the grace period ran out): new peer id, no
            # lobby. Links to the old peers keep working; tell them our new lobby id so that
            # when the game hosts or joins again they recognise us instead of connecting twice.
            logger.info("lobby session lost; the lobby now knows us as %s", welcome.peer_id)
            self._info = None
            self._stream.emit(LobbyUpdated(None))
        if not welcome.resumed:
            for r in self._plane.live:
                self._plane.send_control(r, ["alias", welcome.peer_id])

    def _on_alias(self, r: Remote, lobby_id: PeerId) -> None:
        logger.debug("peer %s is now %s at the lobby", r.id, lobby_id)
        self._aliases[lobby_id] = r.id
        r.lobby_id = lobby_id
        twin = self._remotes.get(lobby_id)
        if twin is not None and twin is not r:  # we raced: a second link to the same peer
            self._remotes.pop(lobby_id)
            if twin.task is not None:
                twin.task.cancel()

    async def _wait_lobby_connected(self) -> None:
        if self._lobby_up is not None:
            await self._lobby_up.wait()

    async def _left_lobby(self, reason: str) -> None:
        self._info = None
        await self._plane.say_bye(list(self._remotes.values()), "kicked" if reason == "kicked"
                                  else "left")
        await self._drop_remotes(list(self._remotes), "left")
        self._stream.emit(LobbyUpdated(None))

    # -- remotes --------------------------------------------------------------------------

    def _reconcile(self) -> None:
        me = self._me()
        if me is None or self._info is None:
            return
        for member in self._info.members:
            if member.id == me.id:
                continue
            r = self._remotes.get(self._key(member.id))
            if r is None:
                self._add_remote(member.id, member.name, p.offers_to(me, member))
            elif r.name is None:
                r.name = member.name

    def _add_remote(self, peer_id: PeerId, name: str | None, offerer: bool) -> Remote:
        r = self._plane.add_remote(peer_id, name, offerer)
        r.task = asyncio.create_task(supervise(self._links, r), name=f"netplay-peer-{peer_id}")
        logger.debug("tracking peer %s (%s), we %s", peer_id, r.label,
                     "offer" if offerer else "answer")
        return r

    async def _drop_remotes(self, ids: list[PeerId], reason: LeaveReason | None) -> None:
        tasks = []
        for peer_id in ids:
            r = self._remotes.pop(peer_id, None)
            if r is None or r.task is None:
                continue
            if reason is not None:
                r.inbox.put_nowait(Leave(reason))
            else:
                r.task.cancel()
            tasks.append(r.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _rtc_ice_servers(self) -> list[RTCIceServer]:
        servers = [RTCIceServer(urls=list(s.urls), username=s.username,
                                credential=s.credential) for s in self.config.ice_servers]
        welcome = self._welcome
        if self.config.use_lobby_ice_servers and welcome is not None:
            servers += [RTCIceServer(urls=list(s.urls), username=s.username,
                                     credential=s.credential) for s in welcome.ice_servers]
        return servers



class _Links:
    """What a peer's supervisor may use of its :class:`Mesh` (a
    :class:`~netplay.remote.LinkOwner`): the lobby as a signal path and the data plane's
    hooks, nothing else."""

    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh
        self._plane = mesh._plane
        self.config = mesh.config
        self.ice_servers = mesh._rtc_ice_servers
        self.lobby_ready = mesh._wait_lobby_connected
        self.is_open = mesh._is_open
        self.conditioner_for = self._plane.conditioner_for
        self.on_frame = self._plane.on_frame
        self.on_bad = self._plane.on_bad
        self.kick = self._plane.kick
        self.joined = self._plane.joined
        self.lost = self._plane.lost

    async def signal(self, r: Remote, payload: p.SignalPayload) -> None:
        mesh = self._mesh
        if mesh.lobby is None or mesh._leaving:  # the lobby would only answer "not_in_lobby"
            logger.debug("signal to %s not sent: not in a lobby", r.id)
            return
        try:
            await mesh._lobby_client().send(p.Signal(to=r.lobby_id, payload=payload))
        except (SignalingError, ChannelClosed) as exc:
            # ChannelClosed: the mesh is closing while this link was (re)connecting.
            logger.debug("signal to %s not sent: %s", r.id, exc)

    def undelivered(self, r: Remote, count: int) -> None:
        logger.warning("%d reliable message(s) to %s were never delivered", count, r.id)
        self._mesh._stream.emit(MessagesUndelivered(r.id, count))
