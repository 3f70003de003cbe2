"""SyncMesh: the game-loop facade. The asyncio loop (uvloop when installed) runs in a daemon
thread; nothing here waits on the network.

```python
with netplay.SyncMesh(config) as net:          # connects to the lobby (waits for welcome)
    pending = net.host(game="squares")          # a concurrent.futures.Future
    while running:                              # the game's frame loop
        for ev in net.poll(): ...               # events since the last call, never blocks
        net.send_state({"x": x, "y": y})
        for peer, state in net.interpolated().items(): draw(peer, state)
```

Sends are handed to the loop thread with ``call_soon_threadsafe``; only that thread touches
aiortc objects (aiortc is not thread-safe, aiortc#903). Values are copied (msgpack round trip
for states, packed bytes for messages) in the calling thread, so the game may mutate them
right after a send. Modelled on anyio's ``start_blocking_portal``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from . import protocol as p
from . import wire
from .conditioner import ConditionerConfig
from .config import MeshConfig
from .errors import ChannelClosed
from .events import Event
from .mesh import Mesh
from .stats import PeerStats
from .types import PeerId, Received

__all__ = ["SyncChannel", "SyncMesh"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _new_loop(use_uvloop: bool | None) -> asyncio.AbstractEventLoop:
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class SyncChannel:
    """A channel of a :class:`SyncMesh`: ``send`` hands over to the loop, ``receive`` drains."""

    def __init__(self, net: SyncMesh, name: str) -> None:
        self._net = net
        self._channel = net._plane.channel(name)

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._channel.name

    def send(self, body: Any, to: PeerId | None = None) -> bool:
        """Send ``body`` to ``to`` or every connected peer, from any thread. Never blocks.

        Returns False when no peer was addressed (see :meth:`SyncMesh.send_event`); raises
        ``MessageTooLarge`` or ``TypeError`` here, in the caller's thread.
        """
        if self._channel.index == 0:
            return self._net.send_state(body, to)
        packed = wire.pack_body(body)
        if self._channel.config.is_reliable:
            return self._net._send_payload(self._channel.index, packed, to)
        self._net._live_loop()
        plane = self._net._plane
        plane.check_size(packed, reliable=False)
        addressed = bool(plane.targets(to))
        self._net._soon(plane.send_unreliable, self._channel.index, wire.unpack_body(packed), to)
        return addressed

    def receive(self) -> list[Received]:
        """Everything received since the last call (``[]`` when nothing)."""
        return self._channel.receive()


class SyncMesh:
    """A :class:`~netplay.Mesh` driven from a plain (non-async) game loop."""

    def __init__(self, config: MeshConfig, *, use_uvloop: bool | None = None) -> None:
        self.config = config
        self._mesh = Mesh(config)
        # The facade's friends: the mesh's event stream (drained from the game's thread) and
        # data plane (sends checked here, handed to the loop thread).
        self._stream = self._mesh._stream
        self._plane = self._mesh._plane
        self._use_uvloop = use_uvloop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> concurrent.futures.Future[None]:
        """Start the loop thread and connect to the lobby; poll or wait on the future."""
        if self._thread is not None or self._closed:
            raise RuntimeError("a SyncMesh can be started only once; create a new one")
        loop = self._loop = _new_loop(self._use_uvloop)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="netplay-loop", daemon=True)
        self._thread.start()
        ready.wait()
        return asyncio.run_coroutine_threadsafe(self._mesh.open(), loop)

    def __enter__(self) -> SyncMesh:
        try:
            self.start().result(timeout=self.config.connect_timeout + 5)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Close the mesh, stop the loop thread. Idempotent; callable from any thread but
        the loop's."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("SyncMesh.close() must not be called from the loop thread")

        async def shutdown() -> None:
            try:
                await self._mesh.close()
            finally:
                me = asyncio.current_task()
                tasks = [t for t in asyncio.all_tasks() if t is not me]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await loop.shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        except Exception as exc:
            logger.warning("SyncMesh close: %s", exc)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()

    # -- plumbing -------------------------------------------------------------------------

    def _live_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the SyncMesh is not started: use 'with SyncMesh(config)'")
        if self._closed:
            raise ChannelClosed("the SyncMesh is closed")
        return self._loop

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self._live_loop().call_soon_threadsafe(self._guarded, fn, *args)

    @staticmethod
    def _guarded(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a send failing in the loop thread must not kill the loop
            logger.exception("netplay send failed")

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            loop = self._live_loop()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _send_payload(self, index: int, payload: bytes, to: PeerId | None) -> bool:
        self._live_loop()  # RuntimeError before start, ChannelClosed after close
        plane = self._plane
        plane.check_size(payload, reliable=True)  # raised here, in the game's thread
        addressed = bool(plane.targets(to, reconnecting=True))
        self._soon(plane.send_reliable, index, payload, to)
        return addressed

    # -- lobby (futures) ------------------------------------------------------------------

    def host(self, game: str, game_version: str = "", *, max_players: int = 8,
             public: bool = True, password: str | None = None,
             metadata: dict[str, Any] | None = None) -> concurrent.futures.Future[p.LobbyInfo]:
        """Create a lobby (see :meth:`Mesh.host`); returns a Future of its state."""
        return self._submit(self._mesh.host(game, game_version, max_players=max_players,
                                            public=public, password=password,
                                            metadata=metadata))

    def join(self, code: str, password: str | None = None
             ) -> concurrent.futures.Future[p.LobbyInfo]:
        """Join a lobby by code; returns a Future of its state."""
        return self._submit(self._mesh.join(code, password))

    def quick_match(self, game: str, game_version: str = "", *, max_players: int = 8,
                    filter: dict[str, Any] | None = None
                    ) -> concurrent.futures.Future[p.LobbyInfo]:
        """Quick-match (see :meth:`Mesh.quick_match`); returns a Future of the lobby's state."""
        return self._submit(self._mesh.quick_match(game, game_version,
                                                   max_players=max_players, filter=filter))

    def list_lobbies(self, game: str | None = None, filter: dict[str, Any] | None = None
                     ) -> concurrent.futures.Future[list[p.LobbySummary]]:
        """List open public lobbies; returns a Future."""
        return self._submit(self._mesh.list_lobbies(game, filter))

    def leave(self) -> concurrent.futures.Future[None]:
        """Leave the lobby and every peer; returns a Future."""
        return self._submit(self._mesh.leave())

    def kick(self, peer: PeerId) -> concurrent.futures.Future[None]:
        """Host only: kick ``peer``; returns a Future."""
        return self._submit(self._mesh.kick(peer))

    def lock(self) -> concurrent.futures.Future[None]:
        """Host only: refuse new joins; returns a Future."""
        return self._submit(self._mesh.lock())

    def unlock(self) -> concurrent.futures.Future[None]:
        """Host only: accept joins again; returns a Future."""
        return self._submit(self._mesh.unlock())

    def set_metadata(self, metadata: dict[str, Any]) -> concurrent.futures.Future[None]:
        """Host only: replace the lobby metadata; returns a Future."""
        return self._submit(self._mesh.set_metadata(metadata))

    def wait_for_peers(self, n: int, timeout: float | None = 10.0
                       ) -> concurrent.futures.Future[list[PeerId]]:
        """A Future that completes when ``n`` peers are connected."""
        return self._submit(self._mesh.wait_for_peers(n, timeout))

    # -- per frame ------------------------------------------------------------------------

    def poll(self) -> list[Event]:
        """Every event since the last call, oldest first. Never blocks."""
        return self._stream.drain()

    def send_state(self, state: Any, to: PeerId | None = None, *, tick: int | None = None
                   ) -> bool:
        """Send our state (unreliable, newest wins; see :meth:`Mesh.send_state`). Never blocks.

        Returns False when no connected peer was addressed right now (the loop thread queues
        the state a moment later). ``MessageTooLarge`` for a state over one datagram,
        ``TypeError`` for a bad ``tick`` or a value msgpack can't encode, ``ValueError`` for a
        ``tick`` beyond ``±2**53`` (docs/wire.md section 3.1), raised here.
        """
        if tick is not None and type(tick) is not int:
            raise TypeError("tick must be an int")
        if tick is not None:
            wire.check_tick(tick)  # ValueError beyond 2**53, here rather than in the loop
        packed = wire.pack_body(state)  # checked and copied in this thread
        self._live_loop()
        self._plane.check_size(packed, reliable=False)
        addressed = bool(self._plane.targets(to))
        self._soon(self._plane.queue_state, wire.unpack_body(packed), to, tick, packed)
        return addressed

    def send_event(self, event: Any, to: PeerId | None = None) -> bool:
        """Send an event reliably (ordered, exactly once; see :meth:`Mesh.send_event`).

        Never blocks. Returns False when no peer was addressed (none connected, or ``to`` is
        not a connected peer); raises ``MessageTooLarge`` over ``MeshConfig.max_message_size``
        and ``TypeError`` for a value msgpack can't encode, here in the caller's thread.
        """
        return self._send_payload(1, wire.pack_body(event), to)

    def channel(self, name: str) -> SyncChannel:
        """The configured channel ``name`` (``UnknownChannel`` if none)."""
        return SyncChannel(self, name)

    def states(self) -> dict[PeerId, Any]:
        """The newest state of each connected peer."""
        return self._mesh.states()

    def interpolated(self, now: float | None = None) -> dict[PeerId, Any]:
        """Every peer's state for rendering now (see :meth:`Mesh.interpolated`)."""
        return self._mesh.interpolated(now)

    def stats(self, peer: PeerId) -> PeerStats:
        """The net_graph of one peer."""
        return self._mesh.stats(peer)

    def all_stats(self) -> dict[PeerId, PeerStats]:
        """The net_graph of every connected peer."""
        return self._mesh.all_stats()

    def set_conditioner(self, config: ConditionerConfig | None, peer: PeerId | None = None
                        ) -> None:
        """Change the link conditioner (see :meth:`Mesh.set_conditioner`)."""
        self._soon(self._mesh.set_conditioner, config, peer)

    @property
    def peers(self) -> list[PeerId]:
        """Connected peer ids."""
        return self._mesh.peers

    @property
    def peer_id(self) -> PeerId:
        """Our lobby-assigned id."""
        return self._mesh.peer_id

    @property
    def lobby(self) -> p.LobbyInfo | None:
        """The current lobby state, or ``None``."""
        return self._mesh.lobby

    @property
    def is_host(self) -> bool:
        """True when we host the lobby."""
        return self._mesh.is_host
