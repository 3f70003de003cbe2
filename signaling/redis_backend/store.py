"""How the Redis backend stores lobbies and sessions, and how one change reaches Redis.

The records (:class:`PeerRecord`, :class:`LobbyRecord` with its :class:`Seat` s) are JSON
strings under ``peer:<id>`` and ``lobby:<code>``. A :class:`Txn` reads records with WATCH and
queues the new records, index updates and frames for one MULTI/EXEC. Frames travel on a peer's
channel with a one-character prefix (:data:`BUFFERED` or :data:`EVENT`); the Lua scripts here
publish them, and hold the signals nobody received.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from netplay.protocol import ErrorCode, LobbyInfo, LobbySummary, Member, PeerId, encode

from ..backend import SUSPENDED_BUFFER, LobbyError

if TYPE_CHECKING:
    from .node import Node

__all__ = ["BUFFERED", "DELIVER", "EVENT", "HOLD", "RELAY", "TOUCH", "LobbyRecord", "PeerRecord",
           "Pipe", "Seat", "Txn"]

Pipe = Any
"""A redis-py asyncio pipeline (typed Any: redis-py types each reply as a union of bytes, str
and awaitables, while the backend's client decodes every reply to str)."""

BUFFERED = "b"
"""First character of a peer-channel payload that is held while the peer is away (signals)."""
EVENT = "e"
"""First character of a peer-channel payload that is dropped while the peer is away."""

_LUA_HELPERS = """
local function hold(buf, payload, maxlen, ttl)
  redis.call('RPUSH', buf, payload)
  redis.call('LTRIM', buf, -tonumber(maxlen), -1)
  redis.call('PEXPIRE', buf, ttl)
end
local function deliver(channel, buf, payload, held, maxlen, ttl)
  if redis.call('PUBLISH', channel, payload) == 0 and held then
    hold(buf, payload, maxlen, ttl)
  end
end
"""
"""Lua helpers: hold a frame for a peer that is away (at most SUSPENDED_BUFFER, the newest
kept); publish a frame to a peer's channel and, if nobody received it, hold it if it is a
signal (events are not held: a resumed peer gets the whole lobby state instead)."""

DELIVER = _LUA_HELPERS + """
deliver(KEYS[1], KEYS[2], ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4])
return 0
"""

HOLD = _LUA_HELPERS + """
hold(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 0
"""

RELAY = _LUA_HELPERS + """
local s = redis.call('GET', KEYS[1])
if not s then return {-1, ''} end
local lobby = cjson.decode(s)['lobby']
if lobby == '' then return {1, ''} end
local t = KEYS[1] ~= KEYS[2] and redis.call('GET', KEYS[2])
if not t or cjson.decode(t)['lobby'] ~= lobby then return {2, lobby} end
deliver(KEYS[3], KEYS[4], ARGV[1], true, ARGV[4], ARGV[5])
if ARGV[2] ~= '' then redis.call('PUBLISH', KEYS[5], ARGV[2]) end
redis.call('PUBLISH', KEYS[6], ARGV[3])
return {0, ''}
"""
"""A signal checked and relayed in one step (both peers in the same lobby), then the sender's
``ok`` (if it asked) and this instance's barrier."""

TOUCH = """
for i, key in ipairs(KEYS) do
  local doc = redis.call('GET', key)
  if doc then
    redis.call('PEXPIRE', key, ARGV[1])
    local peer = cjson.decode(doc)
    redis.call('PEXPIRE', ARGV[2] .. 'token:' .. peer['token'], ARGV[1])
    if peer['lobby'] ~= '' then
      redis.call('PEXPIRE', ARGV[2] .. 'lobby:' .. peer['lobby'], ARGV[1])
    end
  end
end
return 0
"""
"""Refresh the expiry of the sessions attached here, their tokens and their lobbies."""


@dataclass
class PeerRecord:
    """A session (``peer:<id>``): who the peer is, where it sits, where it is attached."""

    id: PeerId
    name: str
    token: str
    lobby: str = ""
    """Code of the lobby it sits in ("" for none)."""
    instance: str = ""
    """The instance its connection is attached to ("" while away in its grace)."""
    expires: float | None = None
    """While away: when its grace ends (on the backend's clock)."""
    reason: str = "disconnected"
    """While away: the leave reason the others see if it does not come back."""


@dataclass
class Seat:
    """A member as its lobby record holds it."""

    id: PeerId
    name: str
    seq: int
    away: bool = False
    """In its resume grace (no connection attached anywhere)."""

    @property
    def connected(self) -> bool:
        """What :func:`signaling.backend.successor` asks."""
        return not self.away


@dataclass
class LobbyRecord:
    """A lobby (``lobby:<code>``) with its members in join order."""

    code: str
    host: PeerId
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
    """While the host is away: when the role may move on (as ``MemoryBackend``'s)."""
    members: list[Seat] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str) -> LobbyRecord:
        """The record from its stored JSON."""
        data = json.loads(raw)
        data["members"] = [Seat(**m) for m in data["members"]]
        return cls(**data)

    def seat(self, peer_id: PeerId) -> Seat | None:
        """The member ``peer_id``, if it is one."""
        return next((m for m in self.members if m.id == peer_id), None)

    def info(self) -> LobbyInfo:
        """The lobby as its members see it."""
        return LobbyInfo(
            code=self.code, host=self.host,
            members=[Member(id=m.id, name=m.name, seq=m.seq) for m in self.members],
            max_players=self.max_players, public=self.public, locked=self.locked,
            has_password=self.password is not None, game=self.game,
            game_version=self.game_version, metadata=self.metadata,
        )

    def summary(self) -> LobbySummary:
        """The lobby as a listing shows it."""
        host = self.seat(self.host)
        return LobbySummary(
            code=self.code, players=len(self.members), max_players=self.max_players,
            game=self.game, game_version=self.game_version, metadata=self.metadata,
            has_password=self.password is not None, host_name=host.name if host else "",
        )

    def is_open(self) -> bool:
        """Whether a join could succeed (not locked, not full)."""
        return not self.locked and len(self.members) < self.max_players


class Txn:
    """One optimistic transaction: reads WATCH their keys; writes and frames go out in EXEC."""

    def __init__(self, node: Node, pipe: Pipe) -> None:
        self.node = node
        self.pipe = pipe
        self.peers: dict[PeerId, PeerRecord | None] = {}
        self.lobbies: dict[str, LobbyRecord | None] = {}
        self.dirty_peers: set[PeerId] = set()
        self.dirty_lobbies: set[str] = set()
        self.writes: list[Callable[[Pipe], Any]] = []
        self.frames: list[tuple[PeerId, str, bool]] = []

    async def watch(self, *keys: str) -> None:
        """Watch more keys (a change to any of them makes EXEC fail and the change retry)."""
        await self.pipe.watch(*keys)

    async def peer(self, peer_id: PeerId) -> PeerRecord | None:
        """The session record of ``peer_id`` (watched), ``None`` if there is none."""
        if peer_id not in self.peers:
            key = self.node.key("peer", peer_id)
            await self.pipe.watch(key)
            raw = await self.pipe.get(key)
            self.peers[peer_id] = PeerRecord(**json.loads(raw)) if raw else None
        return self.peers[peer_id]

    async def session(self, peer_id: PeerId) -> PeerRecord:
        """The session record of a peer that must have one."""
        doc = await self.peer(peer_id)
        if doc is None:
            raise LobbyError(ErrorCode.NOT_AUTHENTICATED, "unknown session")
        return doc

    async def lobby(self, code: str) -> LobbyRecord | None:
        """The lobby record of ``code`` (watched), ``None`` if there is none."""
        if code not in self.lobbies:
            key = self.node.key("lobby", code)
            await self.pipe.watch(key)
            raw = await self.pipe.get(key)
            self.lobbies[code] = LobbyRecord.load(raw) if raw else None
        return self.lobbies[code]

    async def lobby_of(self, peer_id: PeerId) -> tuple[PeerRecord, LobbyRecord]:
        """The session and the lobby of a peer that must be in one."""
        doc = await self.session(peer_id)
        lobby = await self.lobby(doc.lobby) if doc.lobby else None
        if lobby is None:
            raise LobbyError(ErrorCode.NOT_IN_LOBBY, "you are not in a lobby")
        return doc, lobby

    def put_peer(self, doc: PeerRecord) -> None:
        """Write this session record at EXEC."""
        self.peers[doc.id] = doc
        self.dirty_peers.add(doc.id)

    def put_lobby(self, lobby: LobbyRecord) -> None:
        """Write this lobby record at EXEC (and bump its game's quick-match version)."""
        self.lobbies[lobby.code] = lobby
        self.dirty_lobbies.add(lobby.code)

    def drop_peer(self, doc: PeerRecord) -> None:
        """Delete the session, its token and held signals at EXEC."""
        self.peers[doc.id] = None
        self.dirty_peers.add(doc.id)
        n = self.node
        self.writes.append(lambda p: p.delete(n.key("token", doc.token), n.key("buf", doc.id)))
        self.writes.append(lambda p: p.zrem(n.key("suspended"), doc.id))
        if doc.instance:
            self.writes.append(lambda p: p.srem(n.key("inst_peers", doc.instance), doc.id))

    def drop_lobby(self, lobby: LobbyRecord) -> None:
        """Delete the lobby and its index entries at EXEC."""
        self.lobbies[lobby.code] = None
        self.dirty_lobbies.add(lobby.code)
        n = self.node
        self.writes.append(lambda p: p.zrem(n.key("lobbies"), lobby.code))
        self.writes.append(lambda p: p.srem(n.key("game", lobby.game), lobby.code))
        self.writes.append(lambda p: p.zrem(n.key("handover"), lobby.code))
        self.writes.append(lambda p: p.incr(n.key("qmv", lobby.game)))

    def later(self, write: Callable[[Pipe], Any]) -> None:
        """Queue one more write (a callable given the pipeline) for EXEC."""
        self.writes.append(write)

    def send(self, peer_id: PeerId, frame: str, *, buffer: bool = False) -> None:
        """Publish a frame to one peer at EXEC (``buffer``: held while the peer is away)."""
        self.frames.append((peer_id, frame, buffer))

    def broadcast(self, lobby: LobbyRecord, message: BaseModel, *,
                  exclude: PeerId | None = None) -> None:
        """Publish an event to every member but ``exclude`` at EXEC."""
        frame = encode(message)
        for seat in lobby.members:
            if seat.id != exclude:
                self.send(seat.id, frame)

    def queue(self, pipe: Pipe, barrier: str) -> None:
        """After MULTI: every write, then every frame in order, then the barrier."""
        n = self.node
        ttl = n.key_ttl_ms
        for peer_id in self.dirty_peers:
            doc = self.peers[peer_id]
            if doc is not None:
                pipe.set(n.key("peer", peer_id), json.dumps(dataclasses.asdict(doc)), px=ttl)
            else:
                pipe.delete(n.key("peer", peer_id))
        for code in self.dirty_lobbies:
            lobby = self.lobbies[code]
            if lobby is None:
                pipe.delete(n.key("lobby", code))
                continue
            pipe.set(n.key("lobby", code), json.dumps(dataclasses.asdict(lobby)), px=ttl)
            pipe.incr(n.key("qmv", lobby.game))
            if lobby.handover is None:
                pipe.zrem(n.key("handover"), code)
            else:
                pipe.zadd(n.key("handover"), {code: lobby.handover})
        for write in self.writes:
            write(pipe)
        for peer_id, frame, buffer in self.frames:
            payload = (BUFFERED if buffer else EVENT) + frame
            pipe.eval(DELIVER, 2, n.key("peer", peer_id), n.key("buf", peer_id), payload,
                      "1" if buffer else "0", SUSPENDED_BUFFER, ttl)
        pipe.publish(n.key("inst", n.instance), barrier)
