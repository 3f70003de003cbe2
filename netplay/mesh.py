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
import time
from typing import Any

from aiortc import RTCIceServer

from . import _aiortc
from . import protocol as p
from .channels import Channel
from .config import MeshConfig
from .dataplane import DataPlane
from .errors import ChannelClosed, UnknownChannel
from .eventstream import EventStream
from .events import HostChanged, LobbyConnectionChanged, LobbyUpdated, PeerJoined, PeerLeft
from .interpolation import InterpolationBuffer
from .lobby_client import LobbyClient
from .remote import Remote, supervise
from .state import PeerState

__all__ = ["Mesh"]

logger = logging.getLogger(__name__)


class _State(enum.Enum):
    UNOPENED = 1
    OPEN = 2
    CLOSED = 3


class Mesh(EventStream, DataPlane):
    """A session: lobby connection plus a full WebRTC mesh. Open once, close once."""

    def __init__(self, config: MeshConfig) -> None:
        if not isinstance(config, MeshConfig):
            raise TypeError(f"Mesh needs a MeshConfig, got {type(config).__name__}")
        if config.ice_host_addresses is not None:
            # ValueError (or RuntimeError: aioice cannot pin) now, not later
            _aiortc.validate_host_addresses(config.ice_host_addresses)
        DataPlane.__init__(self, config)
        EventStream.__init__(self, config.max_queued)
        self._status = _State.UNOPENED
        self._lobby: LobbyClient | None = None
        self._info: p.LobbyInfo | None = None
        self._remotes: dict[p.PeerId, Remote] = {}
        self._lobby_up: asyncio.Event | None = None
        self._identity: p.PeerId | None = None
        self._aliases: dict[p.PeerId, p.PeerId] = {}
        self._background: set[asyncio.Future[None]] = set()

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
        self._identity = welcome.peer_id
        self._lobby_up.set()
        self._start_dataplane()

    async def close(self) -> None:
        """Say goodbye to every peer, leave the lobby, close everything. Idempotent."""
        if self._status is not _State.OPEN:
            self._status = _State.CLOSED
            return
        self._status = _State.CLOSED
        await self._say_bye(list(self._remotes.values()), "left")
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
        await self._stop_dataplane()
        if lobby is not None:
            await lobby.close()
        self._wake()
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
    def peer_id(self) -> p.PeerId:
        """Our peer id: the one the lobby gave us first. It stays the same for the whole
        session, even when a restarted lobby knows us by another (:attr:`lobby_peer_id`)."""
        if self._identity is None:
            raise RuntimeError("the Mesh is not open yet: use 'async with Mesh(config)'")
        return self._identity

    @property
    def lobby_peer_id(self) -> p.PeerId | None:
        """The id the lobby knows us by now (equal to :attr:`peer_id` unless the lobby
        restarted and forgot us); ``None`` while the lobby is unreachable."""
        return self._lobby.peer_id if self._lobby is not None and self._lobby.connected \
            else None

    @property
    def peers(self) -> list[p.PeerId]:
        """Ids of the peers connected right now (channels open)."""
        return [r.id for r in self._live]

    @property
    def lobby(self) -> p.LobbyInfo | None:
        """The current lobby state, or ``None`` outside a lobby."""
        return self._info

    @property
    def is_host(self) -> bool:
        """True when we host the current lobby."""
        return self._info is not None and self._lobby is not None \
            and self._info.host == self._lobby.peer_id

    def _key(self, lobby_id: p.PeerId) -> p.PeerId:
        """Our name for the peer the lobby calls ``lobby_id`` (see ALIAS in netplay.wire)."""
        return self._aliases.get(lobby_id, lobby_id)

    @property
    def lobby_connected(self) -> bool:
        """True while the WebSocket to the lobby is up (peers work either way)."""
        return self._lobby is not None and self._lobby.connected

    def channel(self, name: str) -> Channel:
        """The configured channel called ``name``; ``UnknownChannel`` if none."""
        for channel in self._channels:
            if channel.name == name:
                return channel
        raise UnknownChannel(f"no channel named {name!r}; configured: "
                             f"{', '.join(c.name for c in self._channels)}")

    # -- lobby requests -------------------------------------------------------------------

    async def _enter(self, request: Any) -> p.LobbyInfo:
        lobby = self._check_open()
        if self._info is not None:
            raise RuntimeError(f"already in lobby {self._info.code}; call leave() first")
        reply = await lobby.request(request)
        assert isinstance(reply, p.LobbyState)
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
        assert isinstance(reply, p.LobbyList)
        return reply.lobbies

    async def leave(self) -> None:
        """Leave the lobby and disconnect from every peer (the session stays open)."""
        lobby = self._check_open()
        if self._info is None:
            return
        await self._say_bye(list(self._remotes.values()), "left")
        await lobby.request(p.Leave())
        await self._left_lobby("left")

    async def kick(self, peer: p.PeerId) -> None:
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
            self._emit(HostChanged(self._key(info.host),
                                   info.host == self._lobby_client().peer_id))
        self._emit(LobbyUpdated(info))
        self._reconcile()

    def _on_lobby_message(self, message: p.ServerMessage) -> None:
        if self._status is not _State.OPEN:
            return
        info = self._info
        if isinstance(message, p.LobbyState):
            self._set_lobby(message.lobby)
        elif isinstance(message, p.RelayedSignal):
            key = self._key(message.from_)
            r = self._remotes.get(key) or self._add_remote(key, "?", False)
            r.inbox.put_nowait(("signal", message.payload))
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
                gone.inbox.put_nowait(("leave", message.reason))
            members = [m for m in info.members if m.id != message.peer_id]
            self._set_lobby(info.model_copy(update={"members": members}))
        elif isinstance(message, p.HostChanged) and info is not None:
            self._set_lobby(info.model_copy(update={"host": message.host}))
        elif isinstance(message, p.Error):
            # unknown_peer: a signal to a peer that already left (expected while re-offering)
            level = logging.DEBUG if message.code is p.ErrorCode.UNKNOWN_PEER else logging.WARNING
            logger.log(level, "lobby error: %s (%s)", message.message, message.code.value)

    def _on_lobby_connection(self, connected: bool, welcome: p.Welcome | None) -> None:
        assert self._lobby_up is not None
        if not connected:
            self._lobby_up.clear()
            self._emit(LobbyConnectionChanged(False, False))
            return
        assert welcome is not None
        self._welcome = welcome
        self._lobby_up.set()
        self._emit(LobbyConnectionChanged(True, welcome.resumed))
        for r in self._remotes.values():  # a signal sent as the lobby went away may be lost
            r.inbox.put_nowait(("lobby_back",))
        if welcome.resumed:
            if welcome.lobby is not None:
                self._set_lobby(welcome.lobby)
        elif self._info is not None:
            # The lobby forgot us (restarted, or the grace period ran out): new peer id, no
            # lobby. Links to the old peers keep working; tell them our new lobby id so that
            # when the game hosts or joins again they recognise us instead of connecting twice.
            logger.info("lobby session lost; the lobby now knows us as %s", welcome.peer_id)
            self._info = None
            self._emit(LobbyUpdated(None))
        if not welcome.resumed:
            for r in self._live:
                self._send_control(r, ["alias", welcome.peer_id])

    def _on_alias(self, r: Remote, lobby_id: p.PeerId) -> None:
        logger.debug("peer %s is now %s at the lobby", r.id, lobby_id)
        self._aliases[lobby_id] = r.id
        r.lobby_id = lobby_id
        twin = self._remotes.get(lobby_id)
        if twin is not None and twin is not r:  # we raced: a second link to the same peer
            self._remotes.pop(lobby_id)
            if twin.task is not None:
                twin.task.cancel()

    async def _wait_lobby_connected(self) -> None:
        assert self._lobby_up is not None
        await self._lobby_up.wait()

    async def _left_lobby(self, reason: str) -> None:
        self._info = None
        await self._say_bye(list(self._remotes.values()), "kicked" if reason == "kicked"
                            else "left")
        await self._drop_remotes(list(self._remotes), "left")
        self._emit(LobbyUpdated(None))

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
            elif r.name == "?":
                r.name = member.name

    def _add_remote(self, peer_id: p.PeerId, name: str, offerer: bool) -> Remote:
        interp = InterpolationBuffer(lerp=self.config.interpolate)
        r = Remote(peer_id, name, offerer, PeerState(
            time.monotonic(), delta=self.config.delta_compression, interpolation=interp),
            **self._new_lanes())
        self._remotes[peer_id] = r
        r.task = asyncio.create_task(supervise(self, r), name=f"netplay-peer-{peer_id}")
        logger.debug("tracking peer %s (%s), we %s", peer_id, name,
                     "offer" if offerer else "answer")
        return r

    async def _drop_remotes(self, ids: list[p.PeerId], reason: str | None) -> None:
        tasks = []
        for peer_id in ids:
            r = self._remotes.pop(peer_id, None)
            if r is None or r.task is None:
                continue
            if reason is not None:
                r.inbox.put_nowait(("leave", reason))
            else:
                r.task.cancel()
            tasks.append(r.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _peer_joined(self, r: Remote, event: PeerJoined) -> None:
        self._live = (*(x for x in self._live if x is not r), r)
        self._emit(event)

    def _peer_lost(self, r: Remote, event: PeerLeft) -> None:
        self._live = tuple(x for x in self._live if x is not r)
        self._forget_peer_state(r.id)
        self._emit(event)

    def _failures(self) -> dict[p.PeerId, str]:
        return {r.id: r.failure for r in self._remotes.values() if r.failure}

    def _rtc_ice_servers(self) -> list[RTCIceServer]:
        servers = [RTCIceServer(urls=list(s.urls), username=s.username,
                                credential=s.credential) for s in self.config.ice_servers]
        welcome = getattr(self, "_welcome", None)
        if self.config.use_lobby_ice_servers and welcome is not None:
            servers += [RTCIceServer(urls=list(s.urls), username=s.username,
                                     credential=s.credential) for s in welcome.ice_servers]
        return servers

