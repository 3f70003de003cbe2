"""The Redis backend's lobby rules: what :class:`~signaling.memory.MemoryBackend` does, over
the records in Redis (``store``), one transaction per change (``node``)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

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

from ..backend import (
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
from .node import Local, Node, ScriptBatch, unreachable
from .store import BUFFERED, EVENT, RELAY, LobbyRecord, PeerRecord, Seat, Txn

__all__ = ["RedisBackend"]

logger = logging.getLogger("signaling")


class RedisBackend(Backend):
    """Lobby state in Redis, shared by every lobby instance with the same ``url`` and
    ``prefix``; relaying through Redis pub/sub (see :mod:`signaling.redis_backend`).

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
        self.node = Node(url, prefix=prefix, key_ttl=max(key_ttl, 4 * grace, 10 * instance_ttl),
                         heartbeat=heartbeat, instance_ttl=instance_ttl,
                         max_connections=max_connections, on_recover=self._recover,
                         on_evict=self._evicted)
        # The hot path: the relays due at once go to Redis as one pipeline of EVALSHAs.
        self._relay_script = ScriptBatch(self.node.redis, self.node.redis.register_script(RELAY))
        self._pending: dict[PeerId, tuple[LeaveReason, float]] = {}
        """Disconnects that failed while Redis was unreachable: replayed when it is back."""

    def key(self, *parts: str) -> str:
        """A Redis key (or channel) name under this backend's prefix."""
        return self.node.key(*parts)

    async def start(self) -> None:
        await self.node.start()

    async def close(self) -> None:
        await self.node.close()

    async def health(self) -> str | None:
        return await self.node.health()

    def _evicted(self, peer_id: PeerId, lost: bool) -> None:
        if self.on_evict is not None:
            self.on_evict(peer_id, lost)

    async def connect(self, name: str, deliver: Deliver) -> Session:
        while True:
            peer_id = secrets.token_urlsafe(6)
            if peer_id not in self.node.locals:
                break
        self.node.locals[peer_id] = Local(deliver=deliver)
        token = secrets.token_urlsafe(24)
        doc = PeerRecord(id=peer_id, name=name, token=token, instance=self.node.instance)

        async def work(txn: Txn) -> None:
            if await txn.peer(peer_id) is not None:
                raise _Taken
            txn.put_peer(doc)
            txn.later(lambda p: p.set(self.key("token", token), peer_id, px=self.node.key_ttl_ms))
            txn.later(lambda p: p.sadd(self.key("inst_peers", self.node.instance), peer_id))

        try:
            await self.node.subscribe(self.key("peer", peer_id))
            await self.node.transact(work)
        except _Taken:  # pragma: no cover - a 48-bit id drawn twice
            del self.node.locals[peer_id]
            return await self.connect(name, deliver)
        except BaseException:
            self.node.locals.pop(peer_id, None)
            await self.node.unsubscribe(self.key("peer", peer_id))
            raise
        return Session(peer_id=peer_id, resume_token=token)

    async def resume(self, token: str, deliver: Deliver) -> Session | None:
        try:
            peer_id = await self.node.redis.get(self.key("token", token))
        except (RedisError, OSError) as exc:
            raise unreachable(exc) from None
        if peer_id is None:
            return None
        channel = self.key("peer", peer_id)
        previous = self.node.locals.get(peer_id)
        local = Local(deliver=None, state="resuming")
        self.node.locals[peer_id] = local

        def committed() -> None:
            local.state = "resumed"

        async def work(txn: Txn) -> tuple[Session, list[str]] | None:
            doc = await txn.peer(peer_id)
            if doc is None or doc.token != token:
                return None
            if doc.expires is not None and doc.expires <= self.clock():
                await self._forget(txn, doc, doc.reason)  # type: ignore[arg-type]
                return None
            old = doc.instance
            if old and old != self.node.instance:
                txn.later(lambda p: p.srem(self.key("inst_peers", old), peer_id))
                txn.later(lambda p: p.publish(self.key("inst", old), f"E:{peer_id}"))
            doc.expires, doc.instance = None, self.node.instance
            new_token = secrets.token_urlsafe(24)
            txn.later(lambda p: p.delete(self.key("token", token)))
            txn.later(lambda p: p.set(self.key("token", new_token), peer_id,
                                      px=self.node.key_ttl_ms))
            txn.later(lambda p: p.zrem(self.key("suspended"), peer_id))
            txn.later(lambda p: p.sadd(self.key("inst_peers", self.node.instance), peer_id))
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
                await self.node.subscribe(channel)
            result = await self.node.transact(work, hooks=[committed])
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

    def _drop_local(self, peer_id: PeerId, local: Local, previous: Local | None) -> None:
        if self.node.locals.get(peer_id) is not local:
            return
        if previous is not None and previous.state == "attached":
            self.node.locals[peer_id] = previous
            return
        local.state = "detaching"
        self.node.spawn(self.node.unsubscribe(self.key("peer", peer_id)))

    async def disconnect(self, peer_id: PeerId, reason: LeaveReason, grace: float) -> None:
        local = self.node.locals.get(peer_id)
        if local is not None:
            local.state, local.deliver = "detaching", None
            await self.node.unsubscribe(self.key("peer", peer_id))

        async def work(txn: Txn) -> None:
            doc = await txn.peer(peer_id)
            if doc is None or doc.instance != self.node.instance:
                return  # gone, or it resumed on another instance meanwhile
            if grace > 0 and reason != "left":
                await self._suspend(txn, doc, reason, grace)
            else:
                await self._forget(txn, doc, reason)

        try:
            await self.node.transact(work)
        except LobbyError:
            self._pending[peer_id] = (reason, grace)

    async def _recover(self) -> None:
        """Redis is back: reclaim the peers attached here (another instance may have taken
        them for dead meanwhile) and replay the disconnects that failed during the outage.
        The first commands after an outage may still fail (stale pooled connections): retry
        for a while."""
        todo = [p for p, local in self.node.locals.items() if local.state == "attached"]
        for _ in range(40):
            try:
                while todo:
                    peer_id = todo[0]
                    if peer_id in self.node.locals:
                        lost = await self.node.transact(
                            functools.partial(self._reclaim, peer_id=peer_id))
                        if lost is not None:
                            self.node.evict(peer_id, lost=lost)
                    todo.pop(0)
                break
            except LobbyError as exc:
                logger.debug("reclaiming sessions after the outage: %s; again", exc)
                await asyncio.sleep(0.25)
        for peer_id, (reason, grace) in list(self._pending.items()):
            del self._pending[peer_id]
            await self.disconnect(peer_id, reason, grace)  # back in _pending if it fails

    async def _reclaim(self, txn: Txn, peer_id: PeerId) -> bool | None:
        """Take a peer attached here back if another instance took it for dead. ``None``
        when it is ours; otherwise whether its session is lost (else it moved elsewhere)."""
        doc = await txn.peer(peer_id)
        if doc is None:
            return True  # lost (Redis restarted without persistence): the client starts anew
        if doc.instance == self.node.instance:
            return None
        if doc.instance or doc.expires is None:
            return False  # it resumed on another instance
        doc.expires, doc.instance = None, self.node.instance
        txn.put_peer(doc)
        txn.later(lambda p: p.zrem(self.key("suspended"), peer_id))
        txn.later(lambda p: p.sadd(self.key("inst_peers", self.node.instance), peer_id))
        if doc.lobby and (lobby := await txn.lobby(doc.lobby)) is not None:
            seat = lobby.seat(peer_id)
            if seat is not None:
                seat.away = False
                self._hand_on_host(txn, lobby)
                txn.put_lobby(lobby)
        return None

    async def expire(self) -> None:
        if self.node.down:
            return  # the sweep resumes when Redis is back
        try:
            await self._expire()
        except (LobbyError, RedisError, OSError) as exc:
            logger.debug("expiring suspended peers failed: %s", exc)

    async def _expire(self) -> None:
        now = self.clock()
        for peer_id in await self.node.redis.zrangebyscore(self.key("suspended"), "-inf", now):
            await self.node.transact(functools.partial(self._expire_peer, peer_id=peer_id, now=now))
        for code in await self.node.redis.zrangebyscore(self.key("handover"), "-inf", now):
            await self.node.transact(functools.partial(self._expire_handover, code=code, now=now))
        await self._reap()

    async def _expire_peer(self, txn: Txn, peer_id: PeerId, now: float) -> None:
        doc = await txn.peer(peer_id)
        if doc is None:
            txn.later(lambda p: p.zrem(self.key("suspended"), peer_id))
        elif doc.expires is not None and doc.expires <= now:
            await self._forget(txn, doc, doc.reason)  # type: ignore[arg-type]

    async def _expire_handover(self, txn: Txn, code: str, now: float) -> None:
        lobby = await txn.lobby(code)
        if lobby is None:
            txn.later(lambda p: p.zrem(self.key("handover"), code))
        elif lobby.handover is not None and lobby.handover <= now:
            self._hand_on_host(txn, lobby)
            txn.put_lobby(lobby)

    async def _reap(self) -> None:
        """Peers attached to an instance whose heartbeat stopped become away (their grace
        starts now). Not in the first ``instance_ttl`` after this instance (re)connected, so
        a Redis restart does not make every other instance look dead."""
        if time.monotonic() - self.node.up_since < self.node.instance_ttl:
            return
        redis = self.node.redis
        for other in await redis.smembers(self.key("instances")):
            if other == self.node.instance or await redis.exists(self.key("inst", other)):
                continue
            peers = await redis.smembers(self.key("inst_peers", other))
            # A stopped instance (a deploy) has no peers left; a killed or stalled one may.
            logger.log(logging.WARNING if peers else logging.INFO,
                       "lobby instance %s stopped its heartbeat; %d of its peers may resume "
                       "elsewhere", other, len(peers))
            for peer_id in peers:
                await self.node.transact(functools.partial(self._reap_peer, peer_id=peer_id,
                                                           instance=other))
            await redis.srem(self.key("instances"), other)
            # Not dead after all (stalled longer than instance_ttl)? It takes its peers back.
            await redis.publish(self.key("inst", other), "R:")
            await redis.delete(self.key("inst_peers", other))

    async def _reap_peer(self, txn: Txn, peer_id: PeerId, instance: str) -> None:
        doc = await txn.peer(peer_id)
        if doc is None or doc.instance != instance:
            return
        if self.grace > 0:
            await self._suspend(txn, doc, "disconnected", self.grace)
        else:
            await self._forget(txn, doc, "disconnected")

    def _hand_on_host(self, txn: Txn, lobby: LobbyRecord, *, quiet: PeerId | None = None) -> None:
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

    def _seat(self, txn: Txn, doc: PeerRecord, lobby: LobbyRecord,
              request_id: int | None) -> LobbyInfo:
        seat = Seat(id=doc.id, name=doc.name, seq=lobby.next_seq)
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

    async def _unseat(self, txn: Txn, doc: PeerRecord, reason: LeaveReason) -> None:
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

    async def _forget(self, txn: Txn, doc: PeerRecord, reason: LeaveReason) -> None:
        await self._unseat(txn, doc, reason)
        txn.drop_peer(doc)

    async def _suspend(self, txn: Txn, doc: PeerRecord, reason: LeaveReason,
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

    async def _free(self, txn: Txn, peer_id: PeerId) -> PeerRecord:
        doc = await txn.session(peer_id)
        if doc.lobby:
            raise LobbyError(ErrorCode.ALREADY_IN_LOBBY,
                             f"you are already in lobby {doc.lobby}; leave it first")
        return doc

    async def _create(self, txn: Txn, doc: PeerRecord, *, max_players: int, public: bool,
                      password: str | None, game: str, game_version: str,
                      metadata: dict[str, Any]) -> LobbyRecord:
        await txn.watch(self.key("lobbies"))  # the limit holds across instances
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
        lobby = LobbyRecord(code=code, host=doc.id, max_players=max_players, public=public,
                            password=password, game=game, game_version=game_version,
                            metadata=dict(metadata), created=created)
        txn.later(lambda p: p.zadd(self.key("lobbies"), {code: created}))
        if public:
            txn.later(lambda p: p.sadd(self.key("game", game), code))
        logger.info("lobby %s created by %s (%s %s, %s, max %d players)", code, doc.id, game,
                    game_version or "-", "public" if public else "private", max_players)
        return lobby

    async def host(self, peer_id: PeerId, request: Host) -> LobbyInfo:
        async def work(txn: Txn) -> LobbyInfo:
            doc = await self._free(txn, peer_id)
            check_metadata(request.metadata, self.max_metadata_bytes)
            lobby = await self._create(
                txn, doc, max_players=request.max_players, public=request.public,
                password=request.password or None, game=request.game,
                game_version=request.game_version, metadata=request.metadata)
            return self._seat(txn, doc, lobby, request.id)

        return await self.node.transact(work)

    async def join(self, peer_id: PeerId, request: Join) -> LobbyInfo:
        code = normalize_code(request.code)

        async def work(txn: Txn) -> LobbyInfo:
            doc = await self._free(txn, peer_id)
            lobby = await txn.lobby(code) if code else None
            if lobby is None:
                raise LobbyError(ErrorCode.LOBBY_NOT_FOUND, f"no open lobby has the code {code!r}")
            check_joinable(code, password=lobby.password, given=request.password,
                           locked=lobby.locked, size=len(lobby.members),
                           max_players=lobby.max_players)
            return self._seat(txn, doc, lobby, request.id)

        return await self.node.transact(work)

    async def quick_match(self, peer_id: PeerId, request: QuickMatch) -> LobbyInfo:
        async def work(txn: Txn) -> LobbyInfo:
            doc = await self._free(txn, peer_id)
            check_metadata(request.filter, self.max_metadata_bytes, "filter")
            # Every change to a lobby of this game bumps qmv:<game>: watching it makes the
            # choice below atomic with the seat (a racing quick-match retries).
            await txn.watch(self.key("qmv", request.game))
            codes = sorted(await txn.pipe.smembers(self.key("game", request.game)))
            raws = await txn.pipe.mget([self.key("lobby", c) for c in codes]) if codes else []
            gone = [code for code, raw in zip(codes, raws, strict=True) if raw is None]
            if gone:  # expired with nobody left to close them
                txn.later(lambda p: p.srem(self.key("game", request.game), *gone))
            candidates = [
                lobby for lobby in (LobbyRecord.load(raw) for raw in raws if raw)
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

        return await self.node.transact(work)

    async def list_lobbies(self, game: str | None = None,
                           filter: Mapping[str, Any] | None = None) -> list[LobbySummary]:
        try:
            redis = self.node.redis
            codes = await redis.zrange(self.key("lobbies"), 0, -1)
            raws = await redis.mget([self.key("lobby", c) for c in codes]) if codes else []
            gone = [code for code, raw in zip(codes, raws, strict=True) if raw is None]
            if gone:  # expired with nobody left to close them (every instance was gone)
                await redis.zrem(self.key("lobbies"), *gone)
        except (RedisError, OSError) as exc:
            raise unreachable(exc) from None
        lobbies = [lobby for lobby in (LobbyRecord.load(raw) for raw in raws if raw)
                   if lobby.public and lobby.is_open()
                   and matches(lobby.game, lobby.game_version, lobby.metadata, game, None,
                               filter or {})]
        lobbies.sort(key=lambda lb: (-len(lb.members), lb.created))
        return [lobby.summary() for lobby in lobbies]

    async def leave(self, peer_id: PeerId, request_id: int | None = None) -> None:
        async def work(txn: Txn) -> None:
            doc, _ = await txn.lobby_of(peer_id)
            await self._unseat(txn, doc, "left")
            txn.send(peer_id, encode(Ok(id=request_id)))

        await self.node.transact(work)

    async def _hosted(self, txn: Txn, peer_id: PeerId) -> tuple[PeerRecord, LobbyRecord]:
        doc, lobby = await txn.lobby_of(peer_id)
        if lobby.host != peer_id:
            raise LobbyError(ErrorCode.NOT_HOST, f"only the host of lobby {lobby.code} may do that")
        return doc, lobby

    async def kick(self, peer_id: PeerId, target: PeerId, request_id: int | None = None) -> None:
        async def work(txn: Txn) -> None:
            _, lobby = await self._hosted(txn, peer_id)
            victim = await txn.peer(target) if lobby.seat(target) and target != peer_id else None
            if victim is None:
                raise LobbyError(ErrorCode.UNKNOWN_PEER,
                                 f"{target!r} is not another member of lobby {lobby.code}")
            txn.send(target, encode(PeerLeft(peer_id=target, reason="kicked")))
            await self._unseat(txn, victim, "kicked")
            txn.send(peer_id, encode(Ok(id=request_id)))

        await self.node.transact(work)

    async def set_locked(self, peer_id: PeerId, locked: bool,
                         request_id: int | None = None) -> LobbyInfo:
        async def work(txn: Txn) -> LobbyInfo:
            _, lobby = await self._hosted(txn, peer_id)
            lobby.locked = locked
            logger.info("lobby %s %s", lobby.code, "locked" if locked else "unlocked")
            return self._announce(txn, lobby, peer_id, request_id)

        return await self.node.transact(work)

    async def set_metadata(self, peer_id: PeerId, metadata: dict[str, Any],
                           request_id: int | None = None) -> LobbyInfo:
        async def work(txn: Txn) -> LobbyInfo:
            _, lobby = await self._hosted(txn, peer_id)
            check_metadata(metadata, self.max_metadata_bytes)
            lobby.metadata = dict(metadata)
            return self._announce(txn, lobby, peer_id, request_id)

        return await self.node.transact(work)

    def _announce(self, txn: Txn, lobby: LobbyRecord, peer_id: PeerId,
                  request_id: int | None) -> LobbyInfo:
        info = lobby.info()
        txn.broadcast(lobby, LobbyState(lobby=info), exclude=peer_id)
        txn.send(peer_id, encode(LobbyState(id=request_id, lobby=info)))
        txn.put_lobby(lobby)
        return info

    async def relay(self, peer_id: PeerId, request: Signal) -> None:
        relayed = encode_relayed_signal(peer_id, request.payload)
        ok = EVENT + encode(Ok(id=request.id)) if request.id is not None else ""
        token, barrier = self.node.barrier()
        try:
            status, code = await self._relay_script(
                keys=[self.key("peer", peer_id), self.key("peer", request.to),
                      self.key("peer", request.to), self.key("buf", request.to),
                      self.key("peer", peer_id), self.key("inst", self.node.instance)],
                args=[BUFFERED + relayed, ok, f"B:{token}", SUSPENDED_BUFFER,
                      self.node.key_ttl_ms])
        except (RedisError, OSError) as exc:
            self.node.barriers.pop(token, None)
            raise unreachable(exc) from None
        if status != 0:
            self.node.barriers.pop(token, None)
        if status == -1:
            raise LobbyError(ErrorCode.NOT_AUTHENTICATED, "unknown session")
        if status == 1:
            raise LobbyError(ErrorCode.NOT_IN_LOBBY, "you are not in a lobby")
        if status == 2:
            raise LobbyError(ErrorCode.UNKNOWN_PEER,
                             f"{request.to!r} is not another member of lobby {code}")
        await self.node.passed(token, barrier)

    async def stats(self) -> dict[str, int]:
        async with self.node.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.key("lobbies"))
            pipe.zcard(self.key("suspended"))
            pipe.get(self.key("members"))
            lobbies, suspended, members = await pipe.execute()
        return {
            "lobbies": int(lobbies),
            "peers": sum(1 for local in self.node.locals.values() if local.state == "attached"),
            "suspended": int(suspended),
            "members": int(members or 0),
        }


class _Taken(Exception):
    """A freshly drawn peer id is already in use (draw again)."""
