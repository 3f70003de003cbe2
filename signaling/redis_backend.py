"""The Redis backend: lobbies and sessions in Redis, shared by every lobby instance using it.

Several ``netplay-lobby`` processes (``--workers N``, or instances on several machines behind
one URL) given the same ``--redis-url`` serve the same lobbies: a code hosted on one is joined
on another, quick-matches meet, signals reach members connected elsewhere, and a client whose
instance died resumes its session on any other within the resume grace.

Keys (all under ``prefix``, ``netplay:`` by default; each expires unless refreshed)
    ``peer:<id>``        a session: name, resume token, lobby, instance, grace deadline (JSON)
    ``token:<token>``    resume token -> peer id
    ``lobby:<code>``     a lobby with its members (JSON)
    ``buf:<id>``         signals held for a peer that is away (list)
    ``lobbies``          every open code (sorted set, by creation)
    ``game:<game>``      public codes of one game; ``qmv:<game>`` bumps on each change to one
    ``suspended``        peers in their resume grace, by deadline (sorted set)
    ``handover``         lobbies whose dropped host may hand the role on, by when (sorted set)
    ``inst:<id>``        an instance's heartbeat; ``instances`` and ``inst_peers:<id>`` list them

Channels
    ``peer:<id>``        frames for one peer: the instance it is attached to subscribes
    ``inst:<id>``        control messages for one instance (barriers, evictions)

Every change is one optimistic transaction (WATCH the keys read, then MULTI/EXEC): it writes the
new state and publishes the frames it causes in the same EXEC, so every peer sees events in
commit order, and concurrent joins or quick-matches on any instances retry instead of
overfilling a lobby. A frame published to a peer nobody subscribes (away, or its instance died)
is held in ``buf:<id>`` when it is a signal, as :class:`~signaling.memory.MemoryBackend` does.
Each transaction ends with a barrier published to this instance, and the request returns once
the barrier came back, so its reply and its events for local peers were delivered by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError
from redis.retry import Retry

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
    RelayedSignal,
    Signal,
    encode,
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

__all__ = ["RedisBackend"]

logger = logging.getLogger("signaling")

T = TypeVar("T")

_Pipe = Any
"""A redis-py asyncio pipeline (typed Any for the reason given at ``RedisBackend._redis``)."""

_BUFFERED = "b"
"""First character of a peer-channel payload that is held while the peer is away (signals)."""
_EVENT = "e"
"""First character of a peer-channel payload that is dropped while the peer is away."""

_LUA_HOLD = """
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

_DELIVER = _LUA_HOLD + """
deliver(KEYS[1], KEYS[2], ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4])
return 0
"""

_HOLD = _LUA_HOLD + """
hold(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 0
"""

_RELAY = _LUA_HOLD + """
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

_TOUCH = """
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


# --- the stored records -----------------------------------------------------------------------


@dataclass
class _PeerDoc:
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


@dataclass
class _Seat:
    id: PeerId
    name: str
    seq: int
    away: bool = False

    @property
    def connected(self) -> bool:
        return not self.away


@dataclass
class _LobbyDoc:
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
    members: list[_Seat] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str) -> _LobbyDoc:
        data = json.loads(raw)
        data["members"] = [_Seat(**m) for m in data["members"]]
        return cls(**data)

    def seat(self, peer_id: PeerId) -> _Seat | None:
        return next((m for m in self.members if m.id == peer_id), None)

    def info(self) -> LobbyInfo:
        return LobbyInfo(
            code=self.code, host=self.host,
            members=[Member(id=m.id, name=m.name, seq=m.seq) for m in self.members],
            max_players=self.max_players, public=self.public, locked=self.locked,
            has_password=self.password is not None, game=self.game,
            game_version=self.game_version, metadata=self.metadata,
        )

    def summary(self) -> LobbySummary:
        host = self.seat(self.host)
        return LobbySummary(
            code=self.code, players=len(self.members), max_players=self.max_players,
            game=self.game, game_version=self.game_version, metadata=self.metadata,
            has_password=self.password is not None, host_name=host.name if host else "",
        )

    def is_open(self) -> bool:
        return not self.locked and len(self.members) < self.max_players


# --- this instance's view of its own connections ----------------------------------------------


@dataclass(eq=False)
class _Local:
    """A peer whose channel this instance subscribes to."""

    deliver: Deliver | None
    state: Literal["attached", "resuming", "resumed", "detaching"] = "attached"
    held: list[str] = field(default_factory=list)
    """While resuming: signals that came before the resume committed (they follow the backlog)."""
    after: list[str] = field(default_factory=list)
    """While resumed but not yet handed over: every frame that came after the commit."""


@dataclass(eq=False)
class _Barrier:
    done: asyncio.Future[None]
    hooks: list[Callable[[], None]] = field(default_factory=list)
    """Run by the reader the moment the barrier arrives, before any later message."""


class _Txn:
    """One optimistic transaction: reads WATCH their keys; writes and frames go out in EXEC."""

    def __init__(self, backend: RedisBackend, pipe: _Pipe) -> None:
        self.b = backend
        self.pipe = pipe
        self.peers: dict[PeerId, _PeerDoc | None] = {}
        self.lobbies: dict[str, _LobbyDoc | None] = {}
        self.dirty_peers: set[PeerId] = set()
        self.dirty_lobbies: set[str] = set()
        self.writes: list[Callable[[_Pipe], Any]] = []
        self.frames: list[tuple[PeerId, str, bool]] = []
        self.hooks: list[Callable[[], None]] = []

    async def watch(self, *keys: str) -> None:
        await self.pipe.watch(*keys)

    async def peer(self, peer_id: PeerId) -> _PeerDoc | None:
        if peer_id not in self.peers:
            key = self.b.key("peer", peer_id)
            await self.pipe.watch(key)
            raw = await self.pipe.get(key)
            self.peers[peer_id] = _PeerDoc(**json.loads(raw)) if raw else None
        return self.peers[peer_id]

    async def session(self, peer_id: PeerId) -> _PeerDoc:
        doc = await self.peer(peer_id)
        if doc is None:
            raise LobbyError(ErrorCode.NOT_AUTHENTICATED, "unknown session")
        return doc

    async def lobby(self, code: str) -> _LobbyDoc | None:
        if code not in self.lobbies:
            key = self.b.key("lobby", code)
            await self.pipe.watch(key)
            raw = await self.pipe.get(key)
            self.lobbies[code] = _LobbyDoc.load(raw) if raw else None
        return self.lobbies[code]

    async def lobby_of(self, peer_id: PeerId) -> tuple[_PeerDoc, _LobbyDoc]:
        doc = await self.session(peer_id)
        lobby = await self.lobby(doc.lobby) if doc.lobby else None
        if lobby is None:
            raise LobbyError(ErrorCode.NOT_IN_LOBBY, "you are not in a lobby")
        return doc, lobby

    def put_peer(self, doc: _PeerDoc) -> None:
        self.peers[doc.id] = doc
        self.dirty_peers.add(doc.id)

    def put_lobby(self, lobby: _LobbyDoc) -> None:
        self.lobbies[lobby.code] = lobby
        self.dirty_lobbies.add(lobby.code)

    def drop_peer(self, doc: _PeerDoc) -> None:
        self.peers[doc.id] = None
        self.dirty_peers.add(doc.id)
        b = self.b
        self.writes.append(lambda p: p.delete(b.key("token", doc.token), b.key("buf", doc.id)))
        self.writes.append(lambda p: p.zrem(b.key("suspended"), doc.id))
        if doc.instance:
            self.writes.append(lambda p: p.srem(b.key("inst_peers", doc.instance), doc.id))

    def drop_lobby(self, lobby: _LobbyDoc) -> None:
        self.lobbies[lobby.code] = None
        self.dirty_lobbies.add(lobby.code)
        b = self.b
        self.writes.append(lambda p: p.zrem(b.key("lobbies"), lobby.code))
        self.writes.append(lambda p: p.srem(b.key("game", lobby.game), lobby.code))
        self.writes.append(lambda p: p.zrem(b.key("handover"), lobby.code))
        self.writes.append(lambda p: p.incr(b.key("qmv", lobby.game)))

    def later(self, write: Callable[[_Pipe], Any]) -> None:
        self.writes.append(write)

    def send(self, peer_id: PeerId, frame: str, *, buffer: bool = False) -> None:
        self.frames.append((peer_id, frame, buffer))

    def broadcast(self, lobby: _LobbyDoc, message: BaseModel, *,
                  exclude: PeerId | None = None) -> None:
        frame = encode(message)
        for seat in lobby.members:
            if seat.id != exclude:
                self.send(seat.id, frame)

    def queue(self, pipe: _Pipe, barrier: str) -> None:
        """After MULTI: every write, then every frame in order, then the barrier."""
        b = self.b
        ttl = b.key_ttl_ms
        for peer_id in self.dirty_peers:
            doc = self.peers[peer_id]
            if doc is not None:
                pipe.set(b.key("peer", peer_id), json.dumps(dataclasses.asdict(doc)), px=ttl)
            else:
                pipe.delete(b.key("peer", peer_id))
        for code in self.dirty_lobbies:
            lobby = self.lobbies[code]
            if lobby is None:
                pipe.delete(b.key("lobby", code))
                continue
            pipe.set(b.key("lobby", code), json.dumps(dataclasses.asdict(lobby)), px=ttl)
            pipe.incr(b.key("qmv", lobby.game))
            if lobby.handover is None:
                pipe.zrem(b.key("handover"), code)
            else:
                pipe.zadd(b.key("handover"), {code: lobby.handover})
        for write in self.writes:
            write(pipe)
        for peer_id, frame, buffer in self.frames:
            payload = (_BUFFERED if buffer else _EVENT) + frame
            pipe.eval(_DELIVER, 2, b.key("peer", peer_id), b.key("buf", peer_id), payload,
                      "1" if buffer else "0", SUSPENDED_BUFFER, ttl)
        pipe.publish(b.key("inst", b.instance), barrier)


class RedisBackend(Backend):
    """Lobby state in Redis, shared by every lobby instance with the same ``url`` and
    ``prefix``; relaying through Redis pub/sub. See the module docstring for the layout.

    ``grace`` is the resume grace the app gives dropped peers (``Settings.resume_grace``): it
    is also given to the peers of an instance that died. ``clock`` must be wall-clock time
    shared by the instances (deadlines are stored in Redis).
    """

    def __init__(self, url: str, *, prefix: str = "netplay:", max_lobbies: int = 10_000,
                 max_metadata_bytes: int = 2048, grace: float = 10.0,
                 host_grace: float = HOST_GRACE, clock: Callable[[], float] = time.time,
                 heartbeat: float = 1.0, instance_ttl: float = 5.0,
                 key_ttl: float = 120.0, max_connections: int = 64) -> None:
        self.url = url
        self.prefix = prefix
        self.max_lobbies = max_lobbies
        self.max_metadata_bytes = max_metadata_bytes
        self.grace = grace
        self.host_grace = host_grace
        self.clock = clock
        self.heartbeat = heartbeat
        """Seconds between this instance's heartbeats (and health checks of Redis)."""
        self.instance_ttl = instance_ttl
        """An instance whose heartbeat is older than this is dead: its peers become away."""
        self.key_ttl_ms = int(max(key_ttl, 4 * grace, 10 * instance_ttl) * 1000)
        """Every key expires this long after its last write or refresh (attached sessions and
        their lobbies are refreshed by their instance's heartbeat)."""
        self.instance = secrets.token_urlsafe(8)
        # Requests beyond max_connections wait for a pooled connection (rather than fail).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10, decode_responses=True,
            socket_connect_timeout=2, socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
        # Typed Any: redis-py types each reply as a union of bytes, str and awaitables, while
        # this client decodes every reply to str (decode_responses=True).
        self._redis: Any = aioredis.Redis.from_pool(pool)
        self._relay_script = self._redis.register_script(_RELAY)  # EVALSHA: the hot path
        self._pubsub: PubSub | None = None
        self._locals: dict[PeerId, _Local] = {}
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._barriers: dict[str, _Barrier] = {}
        self._next_barrier = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._down: dict[str, str] = {}
        """Why Redis is unusable, by who noticed (heartbeat, pubsub); empty when healthy."""
        self._up_since = 0.0
        self._touched = 0.0
        self._pending: dict[PeerId, tuple[LeaveReason, float]] = {}
        """Disconnects that failed while Redis was unreachable: replayed when it is back."""

    def key(self, *parts: str) -> str:
        """A Redis key (or channel) name under this backend's prefix."""
        return self.prefix + ":".join(parts)

    # --- lifecycle ---

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        self._up_since = time.monotonic()
        channel = self.key("inst", self.instance)
        subscribed = self._subscribed[channel] = asyncio.get_running_loop().create_future()
        # The reader subscribes this instance's channel (and resubscribes after outages).
        self._tasks = [asyncio.create_task(self._read(), name="redis pubsub reader"),
                       asyncio.create_task(self._beat_forever(), name="redis heartbeat")]
        try:  # not long: without Redis the app still serves (/healthz says why it cannot)
            await asyncio.wait_for(asyncio.shield(subscribed), 2)
            await self._beat()
        except (RedisError, OSError, TimeoutError) as exc:
            self._mark_down("startup", exc)
        logger.info("redis backend %s on %s (prefix %r)", self.instance, self._safe_url(),
                    self.prefix)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self.key("inst", self.instance))
            await self._redis.srem(self.key("instances"), self.instance)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()

    async def health(self) -> str | None:
        if self._down:
            return "; ".join(sorted(set(self._down.values())))
        return None

    def _safe_url(self) -> str:
        """The URL without a password, for logs."""
        head, sep, tail = self.url.rpartition("@")
        return f"{head.split('://')[0]}://***@{tail}" if sep else self.url

    def _mark_down(self, who: str, exc: BaseException) -> None:
        if not self._down:
            logger.warning("redis %s is unreachable (%s): the lobby is unavailable until it "
                           "is back", self._safe_url(), exc)
        self._down[who] = f"redis unreachable: {exc}"

    def _mark_up(self, who: str) -> None:
        if who not in self._down:
            return
        del self._down[who]
        if not self._down:
            logger.warning("redis %s is reachable again", self._safe_url())
            self._up_since = time.monotonic()
            # Not awaited here: the pub/sub reader calls this, and recovery needs the reader.
            self._spawn(self._recover())

    # --- pub/sub ---

    async def _subscribe(self, channel: str) -> None:
        """Subscribe and wait until Redis confirmed (frames published after that reach us)."""
        assert self._pubsub is not None
        waiter = self._subscribed.get(channel)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._subscribed[channel] = waiter
        try:
            await self._pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(waiter), 5)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unreachable(exc) from None

    async def _unsubscribe(self, channel: str) -> None:
        assert self._pubsub is not None
        self._subscribed.pop(channel, None)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        """Route every pub/sub message. After an error (Redis gone), start over with a new
        pub/sub connection that subscribes every channel again, once Redis answers."""
        delay = 0.05
        while True:
            try:
                assert self._pubsub is not None
                if not self._pubsub.subscribed:
                    await self._pubsub.subscribe(self.key("inst", self.instance), *(
                        self.key("peer", p) for p, local in self._locals.items()
                        if local.state != "detaching"))
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                self._mark_down("pubsub", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                old, self._pubsub = self._pubsub, self._redis.pubsub()
                for peer_id in [p for p, local in self._locals.items()
                                if local.state == "detaching"]:
                    del self._locals[peer_id]  # the new connection does not subscribe them
                if old is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await old.aclose()  # type: ignore[no-untyped-call]
                continue
            delay = 0.05
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "subscribe":
                waiter = self._subscribed.get(channel)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                if channel == self.key("inst", self.instance):
                    self._mark_up("pubsub")
            elif kind == "unsubscribe":
                self._unsubscribed(channel)
            elif kind == "message":
                self._route(channel, message["data"])

    def _unsubscribed(self, channel: str) -> None:
        peer_id = channel[len(self.key("peer", "")):]
        local = self._locals.get(peer_id)
        if local is not None and local.state == "detaching":
            del self._locals[peer_id]

    def _route(self, channel: str, data: str) -> None:
        if channel == self.key("inst", self.instance):
            self._control(data)
            return
        local = self._locals.get(channel[len(self.key("peer", "")):])
        if local is None:
            return
        flag, frame = data[:1], data[1:]
        if local.state == "attached" and local.deliver is not None:
            local.deliver(frame)
        elif local.state == "resuming":
            if flag == _BUFFERED:  # before the resume committed: events are in its lobby state
                local.held.append(frame)
        elif local.state == "resumed":
            local.after.append(frame)
        elif flag == _BUFFERED:  # detaching: keep the signal for when it resumes
            peer_id = channel[len(self.key("peer", "")):]
            self._spawn(self._redis.eval(_HOLD, 1, self.key("buf", peer_id), data,
                                         SUSPENDED_BUFFER, self.key_ttl_ms))

    def _control(self, data: str) -> None:
        kind, _, arg = data.partition(":")
        if kind == "B":
            barrier = self._barriers.pop(arg, None)
            if barrier is not None:
                for hook in barrier.hooks:
                    hook()
                if not barrier.done.done():
                    barrier.done.set_result(None)
        elif kind == "E":
            self._evict(arg)

    def _evict(self, peer_id: PeerId) -> None:
        """The peer resumed on another instance: close its connection here, quietly."""
        local = self._locals.get(peer_id)
        if local is None or local.state != "attached":
            return
        local.state, local.deliver = "detaching", None
        self._spawn(self._unsubscribe(self.key("peer", peer_id)))
        logger.info("%s resumed on another instance; closing its connection here", peer_id)
        if self.on_evict is not None:
            self.on_evict(peer_id)

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            with contextlib.suppress(RedisError, OSError, LobbyError):
                await work
        task = asyncio.ensure_future(run())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # --- heartbeat, recovery, dead instances ---

    async def _beat(self) -> None:
        """Renew this instance's heartbeat and, every quarter of the key expiry, the expiry
        of the sessions attached here, their tokens and their lobbies."""
        touch = time.monotonic() - self._touched >= self.key_ttl_ms / 4000
        attached = [p for p, local in self._locals.items() if local.state == "attached"]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key("inst", self.instance), "1", px=int(self.instance_ttl * 1000))
            pipe.sadd(self.key("instances"), self.instance)
            for i in range(0, len(attached) if touch else 0, 500):
                chunk = attached[i:i + 500]
                pipe.eval(_TOUCH, len(chunk), *[self.key("peer", p) for p in chunk],
                          self.key_ttl_ms, self.prefix)
            await pipe.execute()
        if touch:
            self._touched = time.monotonic()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                self._mark_down("heartbeat", exc)
                continue
            self._mark_up("heartbeat")
            self._mark_up("startup")

    async def _recover(self) -> None:
        """Redis is back: reclaim the peers attached here (another instance may have taken
        them for dead meanwhile) and replay the disconnects that failed during the outage."""
        for peer_id, local in list(self._locals.items()):
            if local.state != "attached":
                continue
            try:
                kept = await self._transact(functools.partial(self._reclaim, peer_id=peer_id))
            except (LobbyError, RedisError, OSError):
                return
            if not kept:
                self._evict(peer_id)
        for peer_id, (reason, grace) in list(self._pending.items()):
            del self._pending[peer_id]
            with contextlib.suppress(LobbyError, RedisError, OSError):
                await self.disconnect(peer_id, reason, grace)

    async def _reclaim(self, txn: _Txn, peer_id: PeerId) -> bool:
        doc = await txn.peer(peer_id)
        if doc is None:
            return False  # lost (Redis restarted without persistence): the client starts anew
        if doc.instance == self.instance:
            return True
        if doc.instance or doc.expires is None:
            return False  # it resumed on another instance
        doc.expires, doc.instance = None, self.instance
        txn.put_peer(doc)
        txn.later(lambda p: p.zrem(self.key("suspended"), peer_id))
        txn.later(lambda p: p.sadd(self.key("inst_peers", self.instance), peer_id))
        if doc.lobby and (lobby := await txn.lobby(doc.lobby)) is not None:
            seat = lobby.seat(peer_id)
            if seat is not None:
                seat.away = False
                self._hand_on_host(txn, lobby)
                txn.put_lobby(lobby)
        return True

    async def _reap(self) -> None:
        """Peers attached to an instance whose heartbeat stopped become away (their grace
        starts now). Not in the first ``instance_ttl`` after this instance (re)connected, so
        a Redis restart does not make every other instance look dead."""
        if time.monotonic() - self._up_since < self.instance_ttl:
            return
        for other in await self._redis.smembers(self.key("instances")):
            if other == self.instance or await self._redis.exists(self.key("inst", other)):
                continue
            logger.warning("lobby instance %s stopped its heartbeat; its peers may resume "
                           "elsewhere", other)
            for peer_id in await self._redis.smembers(self.key("inst_peers", other)):
                await self._transact(functools.partial(self._reap_peer, peer_id=peer_id,
                                                         instance=other))
            await self._redis.srem(self.key("instances"), other)
            await self._redis.delete(self.key("inst_peers", other))

    async def _reap_peer(self, txn: _Txn, peer_id: PeerId, instance: str) -> None:
        doc = await txn.peer(peer_id)
        if doc is None or doc.instance != instance:
            return
        if self.grace > 0:
            await self._suspend(txn, doc, "disconnected", self.grace)
        else:
            await self._forget(txn, doc, "disconnected")

    # --- transactions ---

    def _barrier(self, hooks: list[Callable[[], None]] | None = None) -> tuple[str, _Barrier]:
        """A new barrier: published to this instance's channel after a change's frames."""
        self._next_barrier += 1
        token = str(self._next_barrier)
        barrier = _Barrier(asyncio.get_running_loop().create_future(), list(hooks or ()))
        self._barriers[token] = barrier
        return token, barrier

    async def _passed(self, token: str, barrier: _Barrier) -> None:
        """Wait until the reader saw the barrier: every frame published before it to a peer
        attached here has been delivered (not forever: Redis may have gone away)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(barrier.done), 5)
        self._barriers.pop(token, None)

    async def _transact(self, work: Callable[[_Txn], Awaitable[T]],
                        hooks: list[Callable[[], None]] | None = None) -> T:
        """Run ``work`` as one optimistic transaction (retried when a watched key changed),
        then wait until this instance's subscriber saw its barrier."""
        for _ in range(200):
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    txn = _Txn(self, pipe)
                    result = await work(txn)
                    pipe.multi()
                    token, barrier = self._barrier([*txn.hooks, *(hooks or [])])
                    txn.queue(pipe, f"B:{token}")
                    try:
                        await pipe.execute()
                    except BaseException:
                        self._barriers.pop(token, None)
                        raise
            except WatchError:
                continue
            except (RedisError, OSError) as exc:
                raise _unreachable(exc) from None
            await self._passed(token, barrier)
            return result
        raise LobbyError(ErrorCode.INTERNAL, "the lobby is too busy; try again")

    # --- lobby rules over the stored records (as in MemoryBackend) ---

    def _hand_on_host(self, txn: _Txn, lobby: _LobbyDoc, *, quiet: PeerId | None = None) -> None:
        host = lobby.seat(lobby.host)
        if host is not None and host.connected:
            lobby.handover = None
            return
        if lobby.handover is not None and lobby.handover > self.clock():
            return  # the host may still come back
        heir = successor(lobby.members)
        if heir.away:
            return  # nobody is connected to take over (or to be told)
        logger.info("lobby %s: host %s dropped; %s is the new host", lobby.code, lobby.host,
                    heir.id)
        lobby.host, lobby.handover = heir.id, None
        txn.broadcast(lobby, HostChanged(host=heir.id), exclude=quiet)

    def _seat(self, txn: _Txn, doc: _PeerDoc, lobby: _LobbyDoc,
              request_id: int | None) -> LobbyInfo:
        seat = _Seat(id=doc.id, name=doc.name, seq=lobby.next_seq)
        lobby.next_seq += 1
        lobby.members.append(seat)
        doc.lobby = lobby.code
        logger.info("%s (%s) joined lobby %s (%d/%d)", doc.id, doc.name, lobby.code,
                    len(lobby.members), lobby.max_players)
        txn.broadcast(lobby, PeerJoined(peer=Member(id=seat.id, name=seat.name, seq=seat.seq)),
                      exclude=doc.id)
        self._hand_on_host(txn, lobby, quiet=doc.id)  # every other member is away
        info = lobby.info()
        txn.send(doc.id, encode(LobbyState(id=request_id, lobby=info)))
        txn.put_peer(doc)
        txn.put_lobby(lobby)
        txn.later(lambda p: p.incr(self.key("members")))
        return info

    async def _unseat(self, txn: _Txn, doc: _PeerDoc, reason: LeaveReason) -> None:
        lobby = await txn.lobby(doc.lobby) if doc.lobby else None
        doc.lobby = ""
        txn.put_peer(doc)
        if lobby is None or lobby.seat(doc.id) is None:
            return
        lobby.members = [m for m in lobby.members if m.id != doc.id]
        txn.later(lambda p: p.decr(self.key("members")))
        logger.info("%s (%s) left lobby %s: %s", doc.id, doc.name, lobby.code, reason)
        if not lobby.members:
            txn.drop_lobby(lobby)
            logger.info("lobby %s closed", lobby.code)
            return
        txn.broadcast(lobby, PeerLeft(peer_id=doc.id, reason=reason))
        if lobby.host == doc.id:
            lobby.host, lobby.handover = successor(lobby.members).id, None
            logger.info("lobby %s: %s is the new host", lobby.code, lobby.host)
            txn.broadcast(lobby, HostChanged(host=lobby.host))
        txn.put_lobby(lobby)

    async def _forget(self, txn: _Txn, doc: _PeerDoc, reason: LeaveReason) -> None:
        await self._unseat(txn, doc, reason)
        txn.drop_peer(doc)

    async def _suspend(self, txn: _Txn, doc: _PeerDoc, reason: LeaveReason,
                       grace: float) -> None:
        now = self.clock()
        if doc.instance:
            instance = doc.instance
            txn.later(lambda p: p.srem(self.key("inst_peers", instance), doc.id))
        doc.expires, doc.reason, doc.instance = now + grace, reason, ""
        expires = doc.expires
        txn.later(lambda p: p.zadd(self.key("suspended"), {doc.id: expires}))
        txn.put_peer(doc)
        lobby = await txn.lobby(doc.lobby) if doc.lobby else None
        seat = lobby.seat(doc.id) if lobby is not None else None
        if lobby is None or seat is None:
            return
        seat.away = True
        if lobby.host == doc.id:
            lobby.handover = now + min(self.host_grace, grace)
            self._hand_on_host(txn, lobby)
        txn.put_lobby(lobby)

    async def _free(self, txn: _Txn, peer_id: PeerId) -> _PeerDoc:
        doc = await txn.session(peer_id)
        if doc.lobby:
            raise LobbyError(ErrorCode.ALREADY_IN_LOBBY,
                             f"you are already in lobby {doc.lobby}; leave it first")
        return doc

    async def _create(self, txn: _Txn, doc: _PeerDoc, *, max_players: int, public: bool,
                      password: str | None, game: str, game_version: str,
                      metadata: dict[str, Any]) -> _LobbyDoc:
        count = await txn.pipe.zcard(self.key("lobbies"))
        if count >= self.max_lobbies:
            raise LobbyError(ErrorCode.TOO_MANY_LOBBIES,
                             f"this server already has {count} lobbies, its maximum")
        taken: set[str] = set()
        while True:
            code = new_code(taken.__contains__)
            if await txn.lobby(code) is None:
                break
            taken.add(code)
        created = int(await txn.pipe.incr(self.key("created")))
        lobby = _LobbyDoc(code=code, host=doc.id, max_players=max_players, public=public,
                          password=password, game=game, game_version=game_version,
                          metadata=dict(metadata), created=created)
        txn.later(lambda p: p.zadd(self.key("lobbies"), {code: created}))
        if public:
            txn.later(lambda p: p.sadd(self.key("game", game), code))
        logger.info("lobby %s created by %s (%s %s, %s, max %d players)", code, doc.id, game,
                    game_version or "-", "public" if public else "private", max_players)
        return lobby

    # --- sessions ---

    async def connect(self, name: str, deliver: Deliver) -> Session:
        while True:
            peer_id = secrets.token_urlsafe(6)
            if peer_id not in self._locals:
                break
        self._locals[peer_id] = _Local(deliver=deliver)
        token = secrets.token_urlsafe(24)
        doc = _PeerDoc(id=peer_id, name=name, token=token, instance=self.instance)

        async def work(txn: _Txn) -> None:
            if await txn.peer(peer_id) is not None:
                raise _Taken
            txn.put_peer(doc)
            txn.later(lambda p: p.set(self.key("token", token), peer_id, px=self.key_ttl_ms))
            txn.later(lambda p: p.sadd(self.key("inst_peers", self.instance), peer_id))

        try:
            await self._subscribe(self.key("peer", peer_id))
            await self._transact(work)
        except _Taken:  # pragma: no cover - a 48-bit id drawn twice
            del self._locals[peer_id]
            return await self.connect(name, deliver)
        except BaseException:
            self._locals.pop(peer_id, None)
            await self._unsubscribe(self.key("peer", peer_id))
            raise
        return Session(peer_id=peer_id, resume_token=token)

    async def resume(self, token: str, deliver: Deliver) -> Session | None:
        try:
            peer_id = await self._redis.get(self.key("token", token))
        except (RedisError, OSError) as exc:
            raise _unreachable(exc) from None
        if peer_id is None:
            return None
        channel = self.key("peer", peer_id)
        previous = self._locals.get(peer_id)
        local = _Local(deliver=None, state="resuming")
        self._locals[peer_id] = local

        def committed() -> None:
            local.state = "resumed"

        async def work(txn: _Txn) -> tuple[Session, list[str]] | None:
            doc = await txn.peer(peer_id)
            if doc is None or doc.token != token:
                return None
            if doc.expires is not None and doc.expires <= self.clock():
                await self._forget(txn, doc, doc.reason)  # type: ignore[arg-type]
                return None
            old = doc.instance
            if old and old != self.instance:
                txn.later(lambda p: p.srem(self.key("inst_peers", old), peer_id))
                txn.later(lambda p: p.publish(self.key("inst", old), f"E:{peer_id}"))
            doc.expires, doc.instance = None, self.instance
            new_token = secrets.token_urlsafe(24)
            txn.later(lambda p: p.delete(self.key("token", token)))
            txn.later(lambda p: p.set(self.key("token", new_token), peer_id,
                                      px=self.key_ttl_ms))
            txn.later(lambda p: p.zrem(self.key("suspended"), peer_id))
            txn.later(lambda p: p.sadd(self.key("inst_peers", self.instance), peer_id))
            await txn.watch(self.key("buf", peer_id))
            backlog = [item[1:] for item in await txn.pipe.lrange(self.key("buf", peer_id), 0,
                                                                   -1)]
            txn.later(lambda p: p.delete(self.key("buf", peer_id)))
            doc.token = new_token
            txn.put_peer(doc)
            info = None
            lobby = await txn.lobby(doc.lobby) if doc.lobby else None
            if lobby is not None and (seat := lobby.seat(peer_id)) is not None:
                seat.away = False
                self._hand_on_host(txn, lobby, quiet=peer_id)
                txn.put_lobby(lobby)
                info = lobby.info()
            logger.info("%s (%s) resumed%s", peer_id, doc.name,
                        f" in lobby {doc.lobby}" if doc.lobby else "")
            return Session(peer_id=peer_id, resume_token=new_token, resumed=True,
                           lobby=info), backlog

        try:
            if previous is None or previous.state == "detaching":
                await self._subscribe(channel)
            result = await self._transact(work, hooks=[committed])
        except BaseException:
            self._drop_local(peer_id, local, previous)
            raise
        if result is None:
            self._drop_local(peer_id, local, previous)
            return None
        session, backlog = result

        def hand_over() -> None:  # after the app sent welcome and the backlog
            for frame in local.after:
                deliver(frame)
            local.after.clear()
            local.state, local.deliver = "attached", deliver

        asyncio.get_running_loop().call_soon(hand_over)
        return dataclasses.replace(session, backlog=(*backlog, *local.held))

    def _drop_local(self, peer_id: PeerId, local: _Local, previous: _Local | None) -> None:
        if self._locals.get(peer_id) is not local:
            return
        if previous is not None and previous.state == "attached":
            self._locals[peer_id] = previous
            return
        local.state = "detaching"
        self._spawn(self._unsubscribe(self.key("peer", peer_id)))

    async def disconnect(self, peer_id: PeerId, reason: LeaveReason, grace: float) -> None:
        local = self._locals.get(peer_id)
        if local is not None:
            local.state, local.deliver = "detaching", None
            await self._unsubscribe(self.key("peer", peer_id))

        async def work(txn: _Txn) -> None:
            doc = await txn.peer(peer_id)
            if doc is None or doc.instance != self.instance:
                return  # gone, or it resumed on another instance meanwhile
            if grace > 0 and reason != "left":
                await self._suspend(txn, doc, reason, grace)
            else:
                await self._forget(txn, doc, reason)

        try:
            await self._transact(work)
        except LobbyError:
            self._pending[peer_id] = (reason, grace)

    async def expire(self) -> None:
        if self._down:
            return  # the sweep resumes when Redis is back
        try:
            await self._expire()
        except (LobbyError, RedisError, OSError) as exc:
            logger.debug("expiring suspended peers failed: %s", exc)

    async def _expire(self) -> None:
        now = self.clock()
        for peer_id in await self._redis.zrangebyscore(self.key("suspended"), "-inf", now):
            await self._transact(functools.partial(self._expire_peer, peer_id=peer_id, now=now))
        for code in await self._redis.zrangebyscore(self.key("handover"), "-inf", now):
            await self._transact(functools.partial(self._expire_handover, code=code, now=now))
        await self._reap()

    async def _expire_peer(self, txn: _Txn, peer_id: PeerId, now: float) -> None:
        doc = await txn.peer(peer_id)
        if doc is None:
            txn.later(lambda p: p.zrem(self.key("suspended"), peer_id))
        elif doc.expires is not None and doc.expires <= now:
            await self._forget(txn, doc, doc.reason)  # type: ignore[arg-type]

    async def _expire_handover(self, txn: _Txn, code: str, now: float) -> None:
        lobby = await txn.lobby(code)
        if lobby is None:
            txn.later(lambda p: p.zrem(self.key("handover"), code))
        elif lobby.handover is not None and lobby.handover <= now:
            self._hand_on_host(txn, lobby)
            txn.put_lobby(lobby)

    # --- lobby requests ---

    async def host(self, peer_id: PeerId, request: Host) -> LobbyInfo:
        check_metadata(request.metadata, self.max_metadata_bytes)

        async def work(txn: _Txn) -> LobbyInfo:
            doc = await self._free(txn, peer_id)
            lobby = await self._create(
                txn, doc, max_players=request.max_players, public=request.public,
                password=request.password or None, game=request.game,
                game_version=request.game_version, metadata=request.metadata)
            return self._seat(txn, doc, lobby, request.id)

        return await self._transact(work)

    async def join(self, peer_id: PeerId, request: Join) -> LobbyInfo:
        code = normalize_code(request.code)

        async def work(txn: _Txn) -> LobbyInfo:
            doc = await self._free(txn, peer_id)
            lobby = await txn.lobby(code) if code else None
            if lobby is None:
                raise LobbyError(ErrorCode.LOBBY_NOT_FOUND, f"no open lobby has the code {code!r}")
            check_joinable(code, password=lobby.password, given=request.password,
                           locked=lobby.locked, size=len(lobby.members),
                           max_players=lobby.max_players)
            return self._seat(txn, doc, lobby, request.id)

        return await self._transact(work)

    async def quick_match(self, peer_id: PeerId, request: QuickMatch) -> LobbyInfo:
        check_metadata(request.filter, self.max_metadata_bytes, "filter")

        async def work(txn: _Txn) -> LobbyInfo:
            doc = await self._free(txn, peer_id)
            # Every change to a lobby of this game bumps qmv:<game>: watching it makes the
            # choice below atomic with the seat (a racing quick-match retries).
            await txn.watch(self.key("qmv", request.game))
            codes = sorted(await txn.pipe.smembers(self.key("game", request.game)))
            raws = await txn.pipe.mget([self.key("lobby", c) for c in codes]) if codes else []
            gone = [code for code, raw in zip(codes, raws, strict=True) if raw is None]
            if gone:  # expired with nobody left to close them
                txn.later(lambda p: p.srem(self.key("game", request.game), *gone))
            candidates = [
                lobby for lobby in (_LobbyDoc.load(raw) for raw in raws if raw)
                if lobby.public and lobby.password is None and lobby.is_open()
                and matches(lobby.game, lobby.game_version, lobby.metadata, request.game,
                            request.game_version, request.filter)
            ]
            if candidates:
                lobby = max(candidates, key=lambda lb: (len(lb.members), -lb.created))
                txn.lobbies[lobby.code] = lobby
            else:
                lobby = await self._create(
                    txn, doc, max_players=request.max_players, public=True, password=None,
                    game=request.game, game_version=request.game_version,
                    metadata=request.filter)
            return self._seat(txn, doc, lobby, request.id)

        return await self._transact(work)

    async def list_lobbies(self, game: str | None = None,
                           filter: Mapping[str, Any] | None = None) -> list[LobbySummary]:
        try:
            codes = await self._redis.zrange(self.key("lobbies"), 0, -1)
            raws = await self._redis.mget([self.key("lobby", c) for c in codes]) if codes else []
            gone = [code for code, raw in zip(codes, raws, strict=True) if raw is None]
            if gone:  # expired with nobody left to close them (every instance was gone)
                await self._redis.zrem(self.key("lobbies"), *gone)
        except (RedisError, OSError) as exc:
            raise _unreachable(exc) from None
        lobbies = [lobby for lobby in (_LobbyDoc.load(raw) for raw in raws if raw)
                   if lobby.public and lobby.is_open()
                   and matches(lobby.game, lobby.game_version, lobby.metadata, game, None,
                               filter or {})]
        lobbies.sort(key=lambda lb: (-len(lb.members), lb.created))
        return [lobby.summary() for lobby in lobbies]

    async def leave(self, peer_id: PeerId, request_id: int | None = None) -> None:
        async def work(txn: _Txn) -> None:
            doc, _ = await txn.lobby_of(peer_id)
            await self._unseat(txn, doc, "left")
            txn.send(peer_id, encode(Ok(id=request_id)))

        await self._transact(work)

    async def _hosted(self, txn: _Txn, peer_id: PeerId) -> tuple[_PeerDoc, _LobbyDoc]:
        doc, lobby = await txn.lobby_of(peer_id)
        if lobby.host != peer_id:
            raise LobbyError(ErrorCode.NOT_HOST, f"only the host of lobby {lobby.code} may do that")
        return doc, lobby

    async def kick(self, peer_id: PeerId, target: PeerId, request_id: int | None = None) -> None:
        async def work(txn: _Txn) -> None:
            _, lobby = await self._hosted(txn, peer_id)
            victim = await txn.peer(target) if lobby.seat(target) and target != peer_id else None
            if victim is None:
                raise LobbyError(ErrorCode.UNKNOWN_PEER,
                                 f"{target!r} is not another member of lobby {lobby.code}")
            txn.send(target, encode(PeerLeft(peer_id=target, reason="kicked")))
            await self._unseat(txn, victim, "kicked")
            txn.send(peer_id, encode(Ok(id=request_id)))

        await self._transact(work)

    async def set_locked(self, peer_id: PeerId, locked: bool,
                         request_id: int | None = None) -> LobbyInfo:
        async def work(txn: _Txn) -> LobbyInfo:
            _, lobby = await self._hosted(txn, peer_id)
            lobby.locked = locked
            logger.info("lobby %s %s", lobby.code, "locked" if locked else "unlocked")
            return self._announce(txn, lobby, peer_id, request_id)

        return await self._transact(work)

    async def set_metadata(self, peer_id: PeerId, metadata: dict[str, Any],
                           request_id: int | None = None) -> LobbyInfo:
        async def work(txn: _Txn) -> LobbyInfo:
            _, lobby = await self._hosted(txn, peer_id)
            check_metadata(metadata, self.max_metadata_bytes)
            lobby.metadata = dict(metadata)
            return self._announce(txn, lobby, peer_id, request_id)

        return await self._transact(work)

    def _announce(self, txn: _Txn, lobby: _LobbyDoc, peer_id: PeerId,
                  request_id: int | None) -> LobbyInfo:
        info = lobby.info()
        txn.broadcast(lobby, LobbyState(lobby=info), exclude=peer_id)
        txn.send(peer_id, encode(LobbyState(id=request_id, lobby=info)))
        txn.put_lobby(lobby)
        return info

    async def relay(self, peer_id: PeerId, request: Signal) -> None:
        relayed = RelayedSignal(from_=peer_id, payload=request.payload)  # type: ignore[call-arg]
        ok = _EVENT + encode(Ok(id=request.id)) if request.id is not None else ""
        token, barrier = self._barrier()
        try:
            status, code = await self._relay_script(
                keys=[self.key("peer", peer_id), self.key("peer", request.to),
                      self.key("peer", request.to), self.key("buf", request.to),
                      self.key("peer", peer_id), self.key("inst", self.instance)],
                args=[_BUFFERED + encode(relayed), ok, f"B:{token}", SUSPENDED_BUFFER,
                      self.key_ttl_ms])
        except (RedisError, OSError) as exc:
            self._barriers.pop(token, None)
            raise _unreachable(exc) from None
        if status != 0:
            self._barriers.pop(token, None)
        if status == -1:
            raise LobbyError(ErrorCode.NOT_AUTHENTICATED, "unknown session")
        if status == 1:
            raise LobbyError(ErrorCode.NOT_IN_LOBBY, "you are not in a lobby")
        if status == 2:
            raise LobbyError(ErrorCode.UNKNOWN_PEER,
                             f"{request.to!r} is not another member of lobby {code}")
        await self._passed(token, barrier)

    # --- introspection ---

    async def stats(self) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.key("lobbies"))
            pipe.zcard(self.key("suspended"))
            pipe.get(self.key("members"))
            lobbies, suspended, members = await pipe.execute()
        return {
            "lobbies": int(lobbies),
            "peers": sum(1 for local in self._locals.values() if local.state == "attached"),
            "suspended": int(suspended),
            "members": int(members or 0),
        }


def _unreachable(exc: BaseException) -> LobbyError:
    return LobbyError(ErrorCode.INTERNAL, "the lobby's storage (Redis) is unreachable; try "
                      f"again shortly ({exc})")


class _Taken(Exception):
    """A freshly drawn peer id is already in use (draw again)."""
