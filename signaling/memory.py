"""The memory backend: every lobby, member and session in this process (the default).

Each :class:`MemoryBackend` method runs without awaiting anything, so on one event loop every
request is atomic: concurrent quick-matches cannot overfill a lobby. It cannot be shared by
several processes (``--workers``); :class:`signaling.redis_backend.RedisBackend` can.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from netplay.protocol import (
    ErrorCode,
    Host,
    HostChanged,
    Join,
    LobbyInfo,
    LobbyState,
    LobbySummary,
    Member,
    Ok,
    PeerId,
    PeerJoined,
    PeerLeft,
    QuickMatch,
    Signal,
    encode,
    encode_relayed_signal,
)

from .backend import (
    HOST_GRACE,
    SUSPENDED_BUFFER,
    Backend,
    Deliver,
    LeaveReason,
    LobbyError,
    Session,
    check_joinable,
    check_metadata,
    matches,
    new_code,
    normalize_code,
    successor,
)

__all__ = ["MemoryBackend"]

logger = logging.getLogger("signaling")


@dataclass(eq=False)
class _Peer:
    id: PeerId
    name: str
    resume_token: str
    deliver: Deliver | None
    lobby: _Lobby | None = None
    seq: int = 0
    expires: float | None = None
    """While suspended: when the grace period ends."""
    leave_reason: LeaveReason = "disconnected"
    buffer: deque[str] = field(default_factory=lambda: deque(maxlen=SUSPENDED_BUFFER))

    def send(self, frame: str, *, buffer: bool = False) -> None:
        if self.deliver is not None:
            self.deliver(frame)
        elif buffer:
            self.buffer.append(frame)

    @property
    def connected(self) -> bool:
        return self.deliver is not None

    def member(self) -> Member:
        return Member(id=self.id, name=self.name, seq=self.seq)


@dataclass(eq=False)
class _Lobby:
    code: str
    host: _Peer
    max_players: int
    public: bool
    password: str | None
    game: str
    game_version: str
    metadata: dict[str, Any]
    created: int
    locked: bool = False
    next_seq: int = 0
    handover: float | None = None
    """While the host is away: when the role may move on (it moves once someone connected can
    take it)."""
    members: dict[PeerId, _Peer] = field(default_factory=dict)

    def info(self) -> LobbyInfo:
        return LobbyInfo(
            code=self.code,
            host=self.host.id,
            members=[p.member() for p in self.members.values()],
            max_players=self.max_players,
            public=self.public,
            locked=self.locked,
            has_password=self.password is not None,
            game=self.game,
            game_version=self.game_version,
            metadata=self.metadata,
        )

    def summary(self) -> LobbySummary:
        return LobbySummary(
            code=self.code,
            players=len(self.members),
            max_players=self.max_players,
            game=self.game,
            game_version=self.game_version,
            metadata=self.metadata,
            has_password=self.password is not None,
            host_name=self.host.name,
        )

    def is_open(self) -> bool:
        return not self.locked and len(self.members) < self.max_players

    def matches(self, game: str | None, game_version: str | None,
                filter: Mapping[str, Any]) -> bool:
        return matches(self.game, self.game_version, self.metadata, game, game_version, filter)

    def broadcast(self, message: BaseModel, *, exclude: _Peer | None = None) -> None:
        frame = encode(message)
        for peer in self.members.values():
            if peer is not exclude:
                peer.send(frame)


class MemoryBackend(Backend):
    """All lobby state in this process's memory."""

    def __init__(self, *, max_lobbies: int = 10_000, max_metadata_bytes: int = 2048,
                 clock: Callable[[], float] = time.monotonic,
                 host_grace: float = HOST_GRACE) -> None:
        self.max_lobbies = max_lobbies
        self.host_grace = host_grace
        self.max_metadata_bytes = max_metadata_bytes
        self.clock = clock
        self._peers: dict[PeerId, _Peer] = {}
        self._by_token: dict[str, _Peer] = {}
        self._lobbies: dict[str, _Lobby] = {}
        self._created = 0

    # --- helpers ---

    def _new_peer_id(self) -> PeerId:
        while True:
            peer_id = secrets.token_urlsafe(6)
            if peer_id not in self._peers:
                return peer_id

    def _new_token(self, peer: _Peer) -> str:
        self._by_token.pop(peer.resume_token, None)
        peer.resume_token = secrets.token_urlsafe(24)
        self._by_token[peer.resume_token] = peer
        return peer.resume_token

    def _new_code(self) -> str:
        return new_code(self._lobbies.__contains__)

    def _peer(self, peer_id: PeerId) -> _Peer:
        try:
            return self._peers[peer_id]
        except KeyError:
            raise LobbyError(ErrorCode.NOT_AUTHENTICATED, "unknown session") from None

    def _lobby_of(self, peer_id: PeerId) -> tuple[_Peer, _Lobby]:
        peer = self._peer(peer_id)
        if peer.lobby is None:
            raise LobbyError(ErrorCode.NOT_IN_LOBBY, "you are not in a lobby")
        return peer, peer.lobby

    def _hosted_lobby(self, peer_id: PeerId) -> _Lobby:
        peer, lobby = self._lobby_of(peer_id)
        if lobby.host is not peer:
            raise LobbyError(ErrorCode.NOT_HOST, f"only the host of lobby {lobby.code} may do that")
        return lobby

    def _free_peer(self, peer_id: PeerId) -> _Peer:
        peer = self._peer(peer_id)
        if peer.lobby is not None:
            raise LobbyError(ErrorCode.ALREADY_IN_LOBBY,
                             f"you are already in lobby {peer.lobby.code}; leave it first")
        return peer

    def _create(self, peer: _Peer, *, max_players: int, public: bool, password: str | None,
                game: str, game_version: str, metadata: dict[str, Any]) -> _Lobby:
        if len(self._lobbies) >= self.max_lobbies:
            raise LobbyError(ErrorCode.TOO_MANY_LOBBIES,
                             f"this server already has {len(self._lobbies)} lobbies, its maximum")
        self._created += 1
        lobby = _Lobby(code=self._new_code(), host=peer, max_players=max_players, public=public,
                       password=password, game=game, game_version=game_version,
                       metadata=dict(metadata), created=self._created)
        self._lobbies[lobby.code] = lobby
        logger.info("lobby %s created by %s (%s %s, %s, max %d players)", lobby.code, peer.id,
                    game, game_version or "-", "public" if public else "private", max_players)
        return lobby

    def _seat(self, peer: _Peer, lobby: _Lobby, request_id: int | None) -> LobbyInfo:
        peer.lobby = lobby
        peer.seq = lobby.next_seq
        lobby.next_seq += 1
        lobby.members[peer.id] = peer
        logger.info("%s (%s) joined lobby %s (%d/%d)", peer.id, peer.name, lobby.code,
                    len(lobby.members), lobby.max_players)
        lobby.broadcast(PeerJoined(peer=peer.member()), exclude=peer)
        self._hand_on_host(lobby, quiet=peer)  # every other member is away: the newcomer hosts
        info = lobby.info()
        peer.send(encode(LobbyState(id=request_id, lobby=info)))
        return info

    def _unseat(self, peer: _Peer, reason: LeaveReason) -> None:
        lobby = peer.lobby
        if lobby is None:
            return
        del lobby.members[peer.id]
        peer.lobby = None
        logger.info("%s (%s) left lobby %s: %s", peer.id, peer.name, lobby.code, reason)
        if not lobby.members:
            del self._lobbies[lobby.code]
            logger.info("lobby %s closed", lobby.code)
            return
        lobby.broadcast(PeerLeft(peer_id=peer.id, reason=reason))
        if lobby.host is peer:
            lobby.host = successor(lobby.members.values())
            lobby.handover = None
            logger.info("lobby %s: %s is the new host", lobby.code, lobby.host.id)
            lobby.broadcast(HostChanged(host=lobby.host.id))

    def _hand_on_host(self, lobby: _Lobby, *, quiet: _Peer | None = None) -> None:
        """A host whose connection is gone hands the role on, once its ``handover`` time has
        come, to the earliest-joined member that is still connected; its seat stays until its
        grace ends. ``quiet`` (a peer that gets the whole lobby state right after this) is not
        sent ``host_changed``."""
        if lobby.host.deliver is not None:
            lobby.handover = None
            return
        if lobby.handover is not None and lobby.handover > self.clock():
            return  # the host may still come back
        heir = successor(lobby.members.values())
        if heir.deliver is None:
            return  # nobody is connected to take over (or to be told)
        logger.info("lobby %s: host %s dropped; %s is the new host", lobby.code, lobby.host.id,
                    heir.id)
        lobby.host = heir
        lobby.handover = None
        lobby.broadcast(HostChanged(host=heir.id), exclude=quiet)

    def _forget(self, peer: _Peer, reason: LeaveReason) -> None:
        self._unseat(peer, reason)
        self._peers.pop(peer.id, None)
        self._by_token.pop(peer.resume_token, None)

    # --- sessions ---

    async def connect(self, name: str, deliver: Deliver) -> Session:
        peer = _Peer(id=self._new_peer_id(), name=name, resume_token="", deliver=deliver)
        self._peers[peer.id] = peer
        self._new_token(peer)
        return Session(peer_id=peer.id, resume_token=peer.resume_token)

    async def resume(self, token: str, deliver: Deliver) -> Session | None:
        peer = self._by_token.get(token)
        if peer is None:
            return None
        if peer.expires is not None and peer.expires <= self.clock():
            self._forget(peer, peer.leave_reason)
            return None
        peer.expires = None
        peer.deliver = deliver
        if peer.lobby is not None:  # the host may have dropped while every member was away
            self._hand_on_host(peer.lobby, quiet=peer)
        backlog = tuple(peer.buffer)
        peer.buffer.clear()
        session = Session(peer_id=peer.id, resume_token=self._new_token(peer), resumed=True,
                          lobby=peer.lobby.info() if peer.lobby else None, backlog=backlog)
        logger.info("%s (%s) resumed%s", peer.id, peer.name,
                    f" in lobby {peer.lobby.code}" if peer.lobby else "")
        return session

    async def disconnect(self, peer_id: PeerId, reason: LeaveReason, grace: float) -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.deliver = None
        if grace > 0 and reason != "left":
            peer.expires = self.clock() + grace
            peer.leave_reason = reason
            lobby = peer.lobby
            if lobby is not None and lobby.host is peer:
                lobby.handover = self.clock() + min(self.host_grace, grace)
                self._hand_on_host(lobby)
            return
        self._forget(peer, reason)

    async def expire(self) -> None:
        now = self.clock()
        for peer in [p for p in self._peers.values()
                     if p.expires is not None and p.expires <= now]:
            self._forget(peer, peer.leave_reason)
        for lobby in [lb for lb in self._lobbies.values()
                      if lb.handover is not None and lb.handover <= now]:
            self._hand_on_host(lobby)

    # --- lobby requests ---

    async def host(self, peer_id: PeerId, request: Host) -> LobbyInfo:
        peer = self._free_peer(peer_id)
        check_metadata(request.metadata, self.max_metadata_bytes)
        lobby = self._create(peer, max_players=request.max_players, public=request.public,
                             password=request.password or None, game=request.game,
                             game_version=request.game_version, metadata=request.metadata)
        return self._seat(peer, lobby, request.id)

    async def join(self, peer_id: PeerId, request: Join) -> LobbyInfo:
        peer = self._free_peer(peer_id)
        code = normalize_code(request.code)
        lobby = self._lobbies.get(code)
        if lobby is None:
            raise LobbyError(ErrorCode.LOBBY_NOT_FOUND, f"no open lobby has the code {code!r}")
        check_joinable(code, password=lobby.password, given=request.password,
                       locked=lobby.locked, size=len(lobby.members),
                       max_players=lobby.max_players)
        return self._seat(peer, lobby, request.id)

    async def quick_match(self, peer_id: PeerId, request: QuickMatch) -> LobbyInfo:
        peer = self._free_peer(peer_id)
        check_metadata(request.filter, self.max_metadata_bytes, "filter")
        candidates = [
            lobby for lobby in self._lobbies.values()
            if lobby.public and lobby.password is None and lobby.is_open()
            and lobby.matches(request.game, request.game_version, request.filter)
        ]
        if candidates:
            lobby = max(candidates, key=lambda lb: (len(lb.members), -lb.created))
        else:
            lobby = self._create(peer, max_players=request.max_players, public=True,
                                 password=None, game=request.game,
                                 game_version=request.game_version, metadata=request.filter)
        return self._seat(peer, lobby, request.id)

    async def list_lobbies(self, game: str | None = None,
                           filter: Mapping[str, Any] | None = None) -> list[LobbySummary]:
        lobbies = [lobby for lobby in self._lobbies.values()
                   if lobby.public and lobby.is_open() and lobby.matches(game, None, filter or {})]
        lobbies.sort(key=lambda lb: (-len(lb.members), lb.created))
        return [lobby.summary() for lobby in lobbies]

    async def leave(self, peer_id: PeerId, request_id: int | None = None) -> None:
        peer, _ = self._lobby_of(peer_id)
        self._unseat(peer, "left")
        peer.send(encode(Ok(id=request_id)))

    async def kick(self, peer_id: PeerId, target: PeerId, request_id: int | None = None) -> None:
        lobby = self._hosted_lobby(peer_id)
        victim = lobby.members.get(target)
        if victim is None or victim.id == peer_id:
            raise LobbyError(ErrorCode.UNKNOWN_PEER,
                             f"{target!r} is not another member of lobby {lobby.code}")
        victim.send(encode(PeerLeft(peer_id=victim.id, reason="kicked")))
        self._unseat(victim, "kicked")
        self._peer(peer_id).send(encode(Ok(id=request_id)))

    async def set_locked(self, peer_id: PeerId, locked: bool,
                         request_id: int | None = None) -> LobbyInfo:
        lobby = self._hosted_lobby(peer_id)
        lobby.locked = locked
        logger.info("lobby %s %s", lobby.code, "locked" if locked else "unlocked")
        return self._announce(lobby, peer_id, request_id)

    async def set_metadata(self, peer_id: PeerId, metadata: dict[str, Any],
                           request_id: int | None = None) -> LobbyInfo:
        lobby = self._hosted_lobby(peer_id)
        check_metadata(metadata, self.max_metadata_bytes)
        lobby.metadata = dict(metadata)
        return self._announce(lobby, peer_id, request_id)

    def _announce(self, lobby: _Lobby, peer_id: PeerId, request_id: int | None) -> LobbyInfo:
        """Send the changed lobby state to every member (the requester's copy echoes its id)."""
        info = lobby.info()
        requester = lobby.members[peer_id]
        lobby.broadcast(LobbyState(lobby=info), exclude=requester)
        requester.send(encode(LobbyState(id=request_id, lobby=info)))
        return info

    async def relay(self, peer_id: PeerId, request: Signal) -> None:
        self.relay_now(peer_id, request)

    def relay_now(self, peer_id: PeerId, request: Signal) -> bool:
        peer, lobby = self._lobby_of(peer_id)
        target = lobby.members.get(request.to)
        if target is None or target is peer:
            raise LobbyError(ErrorCode.UNKNOWN_PEER,
                             f"{request.to!r} is not another member of lobby {lobby.code}")
        target.send(encode_relayed_signal(peer.id, request.payload), buffer=True)
        if request.id is not None:
            peer.send(encode(Ok(id=request.id)))
        return True

    # --- introspection ---

    async def stats(self) -> dict[str, int]:
        suspended = sum(1 for p in self._peers.values() if p.deliver is None)
        return {
            "lobbies": len(self._lobbies),
            "peers": len(self._peers) - suspended,
            "suspended": suspended,
            "members": sum(len(lobby.members) for lobby in self._lobbies.values()),
        }
