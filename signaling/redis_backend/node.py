"""This instance's link to Redis: the client and its pool, the pub/sub reader that routes
frames to the peers attached here, their subscriptions, transactions with barriers, the
heartbeat that tells the other instances this one lives, and whether Redis can be reached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, WatchError
from redis.retry import Retry

from netplay.protocol import ErrorCode, PeerId

from ..backend import SUSPENDED_BUFFER, Deliver, LobbyError
from .store import BUFFERED, HOLD, TOUCH, Txn

__all__ = ["Barrier", "Local", "Node", "ScriptBatch", "unreachable"]

logger = logging.getLogger("signaling")

T = TypeVar("T")


@dataclass(eq=False)
class Local:
    """A peer whose channel this instance subscribes to."""

    deliver: Deliver | None
    state: Literal["attached", "resuming", "resumed", "detaching"] = "attached"
    held: list[str] = field(default_factory=list)
    """While resuming: signals that came before the resume committed (they follow the backlog)."""
    after: list[str] = field(default_factory=list)
    """While resumed but not yet handed over: every frame that came after the commit."""


@dataclass(eq=False)
class Barrier:
    """A marker this instance publishes to itself after a change's frames: once the reader
    sees it, every earlier frame for a peer attached here has been delivered."""

    done: asyncio.Future[None]
    hooks: list[Callable[[], None]] = field(default_factory=list)
    """Run by the reader the moment the barrier arrives, before any later message."""
    created: float = field(default_factory=time.monotonic)


class ScriptBatch:
    """Calls of one Lua script made in the same event-loop iteration, sent as one pipeline:
    one write and one round trip for all of them, instead of one ``EVALSHA`` each on its own
    pooled connection (the relay's hot path: with many clients, many signals are due at once).
    Each call still gets its own reply or error, in order."""

    def __init__(self, redis: Any, script: AsyncScript) -> None:
        self.redis = redis
        self.script = script
        self.calls: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """The script's reply to ``keys``/``args``, once the batch went (raises its
        ``RedisError`` or ``OSError``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.calls.append((keys, args, future))
        if len(self.calls) == 1:
            loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        calls, self.calls = self.calls, []
        task = asyncio.get_running_loop().create_task(self._execute(calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, calls: list[tuple[list[Any], list[Any],
                                               asyncio.Future[Any]]]) -> None:
        sha = self.script.sha
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in calls:
                    pipe.evalsha(sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (keys, args, future), result in zip(calls, results, strict=True):
            if isinstance(result, NoScriptError):  # Redis restarted: EVAL loads it again
                try:
                    result = await self.script(keys=keys, args=args)
                except (RedisError, OSError) as exc:
                    result = exc
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def unreachable(exc: BaseException) -> LobbyError:
    """The error a request gets while Redis cannot be reached."""
    return LobbyError(ErrorCode.INTERNAL, "the lobby's storage (Redis) is unreachable; try "
                      f"again shortly ({exc})")


class Node:
    """This instance's side of Redis (see the module docstring). ``on_recover`` runs when
    Redis is back after an outage; ``on_evict(peer_id, lost)`` when a peer attached here must
    go (see :attr:`signaling.backend.Backend.on_evict`)."""

    def __init__(self, url: str, *, prefix: str, key_ttl: float, heartbeat: float,
                 instance_ttl: float, max_connections: int,
                 on_recover: Callable[[], Awaitable[None]],
                 on_evict: Callable[[PeerId, bool], None]) -> None:
        self.url = url
        self.prefix = prefix
        self.heartbeat = heartbeat
        """Seconds between this instance's heartbeats (and health checks of Redis)."""
        self.instance_ttl = instance_ttl
        """An instance whose heartbeat is older than this is dead: its peers become away."""
        self.key_ttl_ms = int(key_ttl * 1000)
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
        self.redis: Any = aioredis.Redis.from_pool(pool)
        self.locals: dict[PeerId, Local] = {}
        """The peers whose channels this instance subscribes to."""
        self.barriers: dict[str, Barrier] = {}
        self.down: dict[str, str] = {}
        """Why Redis is unusable, by who noticed (heartbeat, pubsub); empty when healthy."""
        self.up_since = 0.0
        """When Redis became reachable last (monotonic clock)."""
        self.on_recover = on_recover
        self.on_evict = on_evict
        self._pubsub: PubSub | None = None
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._next_barrier = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._touched = 0.0

    def key(self, *parts: str) -> str:
        """A Redis key (or channel) name under this backend's prefix."""
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        """Connect, subscribe this instance's channel, start the reader and heartbeat."""
        self._pubsub = self.redis.pubsub()
        self.up_since = time.monotonic()
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
        """Stop the tasks, say goodbye (drop the heartbeat) and close the connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            # Only the heartbeat goes: the next sweep of another instance takes any session
            # still attached here as dropped (their clients resume elsewhere) and forgets us.
            await self.redis.delete(self.key("inst", self.instance))
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.redis.aclose()

    async def health(self) -> str | None:
        """``None`` while Redis is reachable, else why not."""
        if self.down:
            return "; ".join(sorted(set(self.down.values())))
        return None

    def _safe_url(self) -> str:
        """The URL without a password, for logs."""
        head, sep, tail = self.url.rpartition("@")
        return f"{head.split('://')[0]}://***@{tail}" if sep else self.url

    def _mark_down(self, who: str, exc: BaseException) -> None:
        if not self.down:
            logger.warning("redis %s is unreachable (%s): the lobby is unavailable until it "
                           "is back", self._safe_url(), exc)
        self.down[who] = f"redis unreachable: {exc}"

    def _mark_up(self, who: str) -> None:
        if who not in self.down:
            return
        del self.down[who]
        if not self.down:
            logger.warning("redis %s is reachable again", self._safe_url())
            self.up_since = time.monotonic()
            # Not awaited here: the pub/sub reader calls this, and recovery needs the reader.
            self.spawn(self.on_recover())

    async def subscribe(self, channel: str) -> None:
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
            raise unreachable(exc) from None

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` (best effort: a new pub/sub connection drops it too)."""
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
                        self.key("peer", p) for p, local in self.locals.items()
                        if local.state != "detaching"))
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                self._mark_down("pubsub", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                old, self._pubsub = self._pubsub, self.redis.pubsub()
                for peer_id in [p for p, local in self.locals.items()
                                if local.state == "detaching"]:
                    del self.locals[peer_id]  # the new connection does not subscribe them
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
        local = self.locals.get(peer_id)
        if local is not None and local.state == "detaching":
            del self.locals[peer_id]

    def _route(self, channel: str, data: str) -> None:
        if channel == self.key("inst", self.instance):
            self._control(data)
            return
        local = self.locals.get(channel[len(self.key("peer", "")):])
        if local is None:
            return
        flag, frame = data[:1], data[1:]
        if local.state == "attached" and local.deliver is not None:
            local.deliver(frame)
        elif local.state == "resuming":
            if flag == BUFFERED:  # before the resume committed: events are in its lobby state
                local.held.append(frame)
        elif local.state == "resumed":
            local.after.append(frame)
        elif flag == BUFFERED:  # detaching: keep the signal for when it resumes
            peer_id = channel[len(self.key("peer", "")):]
            self.spawn(self.redis.eval(HOLD, 1, self.key("buf", peer_id), data,
                                         SUSPENDED_BUFFER, self.key_ttl_ms))

    def _control(self, data: str) -> None:
        kind, _, arg = data.partition(":")
        if kind == "B":
            barrier = self.barriers.pop(arg, None)
            if barrier is not None:
                for hook in barrier.hooks:
                    hook()
                if not barrier.done.done():
                    barrier.done.set_result(None)
        elif kind == "E":
            self.evict(arg)
        elif kind == "R":  # another instance took this one for dead: reclaim the peers
            logger.warning("redis: another instance took this one for dead (a stall longer "
                           "than %g s?); reclaiming its sessions", self.instance_ttl)
            self.spawn(self.on_recover())

    def evict(self, peer_id: PeerId, *, lost: bool = False) -> None:
        """Close the peer's connection here without a leave: it resumed on another instance,
        or (``lost``) its session is gone from Redis."""
        local = self.locals.get(peer_id)
        if local is None or local.state != "attached":
            return
        local.state, local.deliver = "detaching", None
        self.spawn(self.unsubscribe(self.key("peer", peer_id)))
        if lost:
            logger.warning("%s: its session is gone from redis; closing its connection",
                           peer_id)
        else:
            logger.info("%s resumed on another instance; closing its connection here", peer_id)
        self.on_evict(peer_id, lost)

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run ``work`` in the background (Redis errors are its own business)."""
        async def run() -> None:
            with contextlib.suppress(RedisError, OSError, LobbyError):
                await work
        task = asyncio.ensure_future(run())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _beat(self) -> None:
        """Renew this instance's heartbeat and, every quarter of the key expiry, the expiry
        of the sessions attached here, their tokens and their lobbies."""
        touch = time.monotonic() - self._touched >= self.key_ttl_ms / 4000
        attached = [p for p, local in self.locals.items() if local.state == "attached"]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key("inst", self.instance), "1", px=int(self.instance_ttl * 1000))
            pipe.sadd(self.key("instances"), self.instance)
            for i in range(0, len(attached) if touch else 0, 500):
                chunk = attached[i:i + 500]
                pipe.eval(TOUCH, len(chunk), *[self.key("peer", p) for p in chunk],
                          self.key_ttl_ms, self.prefix)
            await pipe.execute()
        if touch:
            self._touched = time.monotonic()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self._release_stale_barriers()
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                self._mark_down("heartbeat", exc)
                continue
            self._mark_up("heartbeat")
            self._mark_up("startup")

    def barrier(self, hooks: list[Callable[[], None]] | None = None) -> tuple[str, Barrier]:
        """A new barrier: published to this instance's channel after a change's frames."""
        self._next_barrier += 1
        token = str(self._next_barrier)
        barrier = Barrier(asyncio.get_running_loop().create_future(), list(hooks or ()))
        self.barriers[token] = barrier
        return token, barrier

    async def passed(self, token: str, barrier: Barrier) -> None:
        """Wait until the reader saw the barrier: every frame published before it to a peer
        attached here has been delivered (not forever: the heartbeat releases barriers that
        Redis never echoed, having gone away; no timer per request on this hot path)."""
        try:
            await barrier.done
        finally:
            self.barriers.pop(token, None)

    def _release_stale_barriers(self, after: float = 5.0) -> None:
        now = time.monotonic()
        for token, barrier in list(self.barriers.items()):
            if now - barrier.created > after:
                logger.warning("redis: no echo of barrier %s within %g s; going on", token,
                               after)
                del self.barriers[token]
                if not barrier.done.done():
                    barrier.done.set_result(None)

    async def transact(self, work: Callable[[Txn], Awaitable[T]],
                        hooks: list[Callable[[], None]] | None = None) -> T:
        """Run ``work`` as one optimistic transaction (retried when a watched key changed),
        then wait until this instance's subscriber saw its barrier."""
        for _ in range(200):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    txn = Txn(self, pipe)
                    result = await work(txn)
                    pipe.multi()
                    token, barrier = self.barrier(hooks)
                    txn.queue(pipe, f"B:{token}")
                    try:
                        await pipe.execute()
                    except BaseException:
                        self.barriers.pop(token, None)
                        raise
            except WatchError:
                continue
            except (RedisError, OSError) as exc:
                raise unreachable(exc) from None
            await self.passed(token, barrier)
            return result
        raise LobbyError(ErrorCode.INTERNAL, "the lobby is too busy; try again")
