"""The only module of the demo that imports netplay.

:class:`NetSession` wraps :class:`netplay.SyncMesh` (its asyncio loop runs in a daemon thread, so
no call here waits on the network). It passes on netplay's peer events (``PeerJoined``,
``PeerLeft``, ``HostChanged``, ``MessageReceived``, re-exported here) and turns lobby state into
the demo's :class:`LobbyView` and link stats into :class:`LinkNumbers`. The game rules and the
renderer never see netplay, so they stay testable on their own.

It also keeps the counters the headless ``--json`` summary reports: the peers seen, and the
snapshots and events received from each peer (in total and since the last host change).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import netplay
from netplay.conditioner import ConditionerConfig
from netplay.errors import LobbyUnavailable
from netplay.errors import NetplayError as NetError
from netplay.events import HostChanged, LobbyUpdated, MessageReceived, PeerJoined, PeerLeft

__all__ = [
    "GAME",
    "GAME_VERSION",
    "PRESETS",
    "HostChanged",
    "LinkNumbers",
    "LobbyChanged",
    "LobbyRow",
    "LobbyUnavailable",
    "LobbyView",
    "MessageReceived",
    "NetError",
    "NetEvent",
    "NetSession",
    "PeerJoined",
    "PeerLeft",
    "unreachable_reason",
]

logger = logging.getLogger(__name__)

GAME = "squares"
GAME_VERSION = "1"
PRESETS: tuple[str, ...] = ("off", "good", "mobile", "awful")
"""Link conditioner presets cycled in game ("off" is a perfect link)."""


@dataclass(frozen=True)
class LobbyView:
    """The lobby as the demo shows it."""

    code: str
    host: str
    members: tuple[tuple[str, str, int], ...]
    """(peer id, name, join order) of each member."""
    max_players: int
    public: bool
    started: bool


@dataclass(frozen=True)
class LobbyRow:
    """One public lobby in the browser."""

    code: str
    host_name: str
    players: int
    max_players: int
    started: bool


@dataclass(frozen=True)
class LobbyChanged:
    """Members, lock or metadata changed (``lobby`` None once we left)."""

    lobby: LobbyView | None


NetEvent = PeerJoined | PeerLeft | HostChanged | LobbyChanged | MessageReceived
"""What :meth:`NetSession.poll` returns: netplay's peer events, :class:`LobbyChanged` for lobby
updates, and ``MessageReceived`` for game events (the "events" channel only)."""


@dataclass(frozen=True)
class LinkNumbers:
    """A peer's link quality, for the net graph and the JSON summary (None: not measured yet)."""

    rtt_ms: float | None
    jitter_ms: float | None
    loss: float | None
    kbps_in: float | None
    kbps_out: float | None
    interp_ms: float | None
    path: str | None = None
    """The link's ICE candidate pair kind (host, srflx, prflx, relay), if known."""


@dataclass
class Counters:
    """What the ``--json`` summary reports about traffic."""

    peers_seen: list[str] = field(default_factory=list)
    snapshots: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    host_changes: list[str] = field(default_factory=list)
    snapshots_since_host_change: Counter[str] = field(default_factory=Counter)
    events_since_host_change: Counter[str] = field(default_factory=Counter)


def _lobby_view(info: Any) -> LobbyView:
    return LobbyView(
        code=info.code, host=info.host,
        members=tuple((m.id, m.name, m.seq) for m in info.members),
        max_players=info.max_players, public=info.public,
        started=bool(info.metadata.get("started")),
    )


def conditioner_for(preset: str, lag_ms: float = 0.0, loss: float = 0.0
                    ) -> ConditionerConfig | None:
    """A netplay conditioner from a preset name, or from ``--lag``/``--loss`` for "custom".

    "off" gives None: a perfect link (at start-up, netplay then reads ``NETPLAY_CONDITIONER``).
    """
    if preset == "custom":
        return ConditionerConfig(latency_ms=lag_ms, loss=loss)
    if preset == "off":
        return None
    return ConditionerConfig.preset(preset)


def unreachable_reason(exc: LobbyUnavailable) -> str:
    """Why the lobby could not be reached, in words that say what to check.

    Built from the exception's cause (the socket or HTTP error), not from netplay's message.
    """
    cause = exc.__cause__
    status = getattr(getattr(cause, "response", None), "status_code", None)
    if isinstance(status, int):
        if 400 <= status < 500:
            return f"the server answered HTTP {status} (is the path /ws?)"
        return f"the server answered HTTP {status}"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused (is a netplay-lobby running at that address and port?)"
    if isinstance(cause, OSError) and cause.strerror:
        return f"{cause.strerror} (check the host name and port)"
    return str(cause or exc)


class NetSession:
    """One player's connection to the lobby and the mesh."""

    def __init__(self, lobby_url: str, name: str, *, conditioner: str = "off",
                 lag_ms: float = 0.0, loss: float = 0.0,
                 ice_host_addresses: tuple[str, ...] | None = ("127.0.0.1",),
                 interpolate: Callable[[Any, Any, float], Any] | None = None) -> None:
        self.conditioner = "custom" if (lag_ms or loss) else conditioner
        if self.conditioner == "off" and ConditionerConfig.from_env() is not None:
            self.conditioner = "env"
        self.lag_ms = lag_ms
        self.loss = loss
        config = netplay.MeshConfig(
            lobby_url=lobby_url, name=name, ice_host_addresses=ice_host_addresses,
            conditioner=conditioner_for(self.conditioner, lag_ms, loss),
            interpolate=interpolate,
        )
        self.mesh = netplay.SyncMesh(config)
        self.counters = Counters()
        self._names: dict[str, str] = {}
        self._raw_snapshots: dict[str, int] = {}
        self._last_link: dict[str, LinkNumbers] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self) -> NetSession:
        """Connect to the lobby (returns once the session is open)."""
        self.mesh.__enter__()
        return self

    def close(self) -> None:
        """Leave the lobby and close every peer connection (idempotent)."""
        self.mesh.__exit__(None, None, None)

    # --- lobby --------------------------------------------------------------------------------

    def host(self, public: bool, max_players: int) -> Future[Any]:
        """Host a lobby; the future resolves once we are its host."""
        return self.mesh.host(game=GAME, game_version=GAME_VERSION, max_players=max_players,
                              public=public, metadata={"started": False})

    def join(self, code: str) -> Future[Any]:
        """Join a lobby by its code."""
        return self.mesh.join(code.strip().upper())

    def quick_match(self, max_players: int = 8) -> Future[Any]:
        """Join the fullest open public lobby of this game, or host one."""
        return self.mesh.quick_match(game=GAME, game_version=GAME_VERSION,
                                     max_players=max_players)

    def list_lobbies(self) -> Future[list[LobbyRow]]:
        """Public lobbies of this game, as rows for the lobby browser."""
        done: Future[list[LobbyRow]] = Future()

        def convert(fut: Future[Any]) -> None:
            error = fut.exception()
            if error is not None:
                done.set_exception(error)
                return
            done.set_result([
                LobbyRow(s.code, s.host_name, s.players, s.max_players,
                         bool(s.metadata.get("started")))
                for s in fut.result()
            ])

        self.mesh.list_lobbies(game=GAME).add_done_callback(convert)
        return done

    def leave(self) -> Future[Any]:
        """Leave the lobby and every peer (the session stays open for another lobby)."""
        self._raw_snapshots.clear()
        return self.mesh.leave()

    def start_match(self) -> None:
        """Host only: mark the lobby started, so every member enters the match."""
        self.mesh.set_metadata({"started": True})

    @property
    def lobby(self) -> LobbyView | None:
        """The lobby we are in, if any."""
        info = self.mesh.lobby
        return None if info is None else _lobby_view(info)

    @property
    def peer_id(self) -> str:
        """Our server-assigned peer id."""
        return str(self.mesh.peer_id)

    @property
    def peers(self) -> list[str]:
        """Peers currently connected."""
        return list(self.mesh.peers)

    def name_of(self, peer_id: str) -> str:
        """Display name of a lobby member."""
        lobby = self.lobby
        for member_id, name, _ in lobby.members if lobby else ():
            if member_id == peer_id:
                return name
        return self._names.get(peer_id, peer_id)

    # --- per frame ----------------------------------------------------------------------------

    def poll(self) -> list[NetEvent]:
        """Everything that happened since the last call, as the demo's records."""
        out: list[NetEvent] = []
        for ev in self.mesh.poll():
            if isinstance(ev, PeerJoined):
                self._names[ev.peer_id] = ev.name
                if ev.peer_id not in self.counters.peers_seen:
                    self.counters.peers_seen.append(ev.peer_id)
                out.append(ev)
            elif isinstance(ev, PeerLeft):
                out.append(ev)
            elif isinstance(ev, HostChanged):
                self.counters.host_changes.append(ev.host)
                self.counters.snapshots_since_host_change.clear()
                self.counters.events_since_host_change.clear()
                out.append(ev)
            elif isinstance(ev, LobbyUpdated):
                out.append(LobbyChanged(None if ev.lobby is None else _lobby_view(ev.lobby)))
            elif isinstance(ev, MessageReceived) and ev.channel == "events":
                self.counters.events[ev.peer_id] += 1
                self.counters.events_since_host_change[ev.peer_id] += 1
                out.append(ev)
        return out

    def remote_states(self) -> dict[str, Mapping[str, Any]]:
        """Every peer's state for rendering, sampled by netplay's interpolation."""
        return dict(self.mesh.interpolated())

    def count_snapshots(self) -> None:
        """Update the per-peer snapshot counters from netplay's stats (call now and then)."""
        for peer_id in self.peers:
            try:
                total = int(self.mesh.stats(peer_id).snapshots_received)
            except KeyError:  # left since self.peers was read
                continue
            last = self._raw_snapshots.get(peer_id, 0)
            new = total - last if total >= last else total  # a reconnected link counts anew
            self._raw_snapshots[peer_id] = total
            if new > 0:
                self.counters.snapshots[peer_id] += new
                self.counters.snapshots_since_host_change[peer_id] += new

    def send_state(self, state: Mapping[str, Any]) -> None:
        """Broadcast our snapshot (unreliable, newest wins, never blocks)."""
        self.mesh.send_state(dict(state))

    def send_event(self, event: Mapping[str, Any], to: str | None = None) -> None:
        """Send a reliable event to one peer or everyone."""
        self.mesh.send_event(dict(event), to=to)

    def link(self, peer_id: str) -> LinkNumbers:
        """The net graph numbers of one peer (the last known ones once it has left)."""
        try:
            s = self.mesh.stats(peer_id)
        except KeyError:
            return self._last_link.get(peer_id, LinkNumbers(None, None, None, None, None, None))
        numbers = LinkNumbers(
            rtt_ms=s.rtt_ms, jitter_ms=s.jitter_ms, loss=s.loss,
            kbps_in=s.bytes_in_per_s * 8 / 1000, kbps_out=s.bytes_out_per_s * 8 / 1000,
            interp_ms=s.interp_delay_ms,
            path=s.candidate_pair.kind if s.candidate_pair is not None else None,
        )
        self._last_link[peer_id] = numbers
        return numbers

    @property
    def conditioner_label(self) -> str:
        """The link conditioner in use: a preset name, or the ``--lag``/``--loss`` values."""
        if self.conditioner == "custom":
            return f"lag {self.lag_ms:g} ms, loss {self.loss * 100:g}%"
        if self.conditioner == "env":
            return "from NETPLAY_CONDITIONER"
        return self.conditioner

    def cycle_conditioner(self) -> str:
        """Switch to the next link conditioner preset (off, good, mobile, awful)."""
        current = self.conditioner if self.conditioner in PRESETS else "off"
        self.conditioner = PRESETS[(PRESETS.index(current) + 1) % len(PRESETS)]
        self.mesh.set_conditioner(conditioner_for(self.conditioner))
        return self.conditioner
