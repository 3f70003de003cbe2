"""One running match: glue between the network session, the game rules and the renderer.

Each frame (:meth:`Match.frame`), in the order of pygame's ``aliens.py`` loop: network events
(joins, leaves, host changes, reliable game events) are applied to the world; remote players are
set from netplay's interpolated states; the local controls (keyboard or bot) go through
:func:`game.step`; what the step caused is sent as reliable events; our snapshot is broadcast.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict, deque
from typing import Any

from . import game
from .net import (
    HostChanged,
    LobbyChanged,
    MessageReceived,
    NetSession,
    PeerJoined,
    PeerLeft,
)
from .render import HudInfo, NetRow

__all__ = ["Match", "leave_text"]

logger = logging.getLogger(__name__)

RTT_HISTORY = 90
"""RTT samples kept per peer for the net graph plot (one per STATS_EVERY frames)."""
STATS_EVERY = 10
NOTICES_KEPT = 20

_LEAVES = {
    "left": "left",
    "kicked": "was kicked",
    "timed_out": "dropped (timed out)",
    "connection_failed": "dropped (connection failed)",
    "disconnected": "dropped (disconnected)",
}


def leave_text(name: str, reason: str) -> str:
    """The message shown when a peer is gone: ``"bob left"``, ``"bob dropped (timed out)"``."""
    return f"{name} {_LEAVES.get(reason, f'left ({reason})')}"


class Match:
    """The world of one peer plus what it needs to talk to the others."""

    def __init__(self, net: NetSession, seed: int | None = None, role: str = "",
                 bots: int = 0) -> None:
        self.net = net
        self.role = role
        """How we entered the lobby (``host``, ``join``, ``quick``), for the summary."""
        self.bots = bots
        """``--bots`` processes this player started, for the summary."""
        lobby = net.lobby
        host = lobby.host if lobby else net.peer_id
        self.world = game.World(me=net.peer_id, host_id=host, rng=random.Random(seed))
        self.code = lobby.code if lobby else ""
        self.frames = 0
        self.rtt_history: dict[str, deque[float]] = {}
        self.notices: list[str] = []
        """The membership messages shown (joins, leaves with their reason, host changes)."""
        self.event_kinds: defaultdict[str, Counter[str]] = defaultdict(Counter)
        """Game events received, per sender and kind (``shot``, ``hit``, ``pickup``, ...)."""
        self._slots: dict[str, int] = {}
        self._greeted: set[str] = set()
        self._sync_members()
        game.add_player(self.world, net.peer_id, net.name_of(net.peer_id), self._slot(net.peer_id))
        for peer_id in net.peers:
            self._add(peer_id, net.name_of(peer_id))
            self._greet(peer_id)

    # --- membership ---------------------------------------------------------------------------

    def _sync_members(self) -> None:
        lobby = self.net.lobby
        for peer_id, _, seq in lobby.members if lobby else ():
            self._slots[peer_id] = seq

    def _slot(self, peer_id: str) -> int:
        return self._slots.get(peer_id, len(self._slots))

    def _add(self, peer_id: str, name: str) -> None:
        game.add_player(self.world, peer_id, name, self._slot(peer_id))

    def _greet(self, peer_id: str) -> None:
        # Once per peer, when its link is up: a peer whose link opens after the match started
        # would miss a hello broadcast at the start.
        if peer_id not in self._greeted:
            self._greeted.add(peer_id)
            self._send([game.chat("hi, good luck!", to=peer_id)])

    # --- per frame ----------------------------------------------------------------------------

    def frame(self, controls: int, dt: float) -> None:
        """Advance one frame with this peer's control bits."""
        self.frames += 1
        for ev in self.net.poll():
            self._on_net_event(ev)
        for peer_id, state in self.net.remote_states().items():
            if peer_id in self.world.players:
                game.apply_remote_state(self.world, peer_id, state)
        self._send(game.step(self.world, {self.world.me: controls}, dt))
        self.net.send_state(game.local_state(self.world))
        if self.frames % STATS_EVERY == 0:
            self.net.count_snapshots()
            self._sample_rtt()

    def _on_net_event(self, ev: Any) -> None:
        world = self.world
        if isinstance(ev, PeerJoined):
            self._sync_members()
            fresh = ev.peer_id not in world.players
            self._add(ev.peer_id, ev.name)
            if fresh:
                self._notice(f"{ev.name} joined")
            self._send(game.welcome(world, ev.peer_id))
            self._greet(ev.peer_id)
        elif isinstance(ev, PeerLeft):
            if ev.peer_id not in world.players:
                return  # not in this match (a lobby we left earlier)
            name = world.name_of(ev.peer_id)
            game.remove_player(world, ev.peer_id)
            self.rtt_history.pop(ev.peer_id, None)
            self._notice(leave_text(name, ev.reason))
        elif isinstance(ev, HostChanged):
            self._send(game.set_host(world, ev.host))
            who = "you are" if ev.is_me else f"{world.name_of(ev.host)} is"
            self._notice(f"{who} the host now")
        elif isinstance(ev, LobbyChanged) and ev.lobby is not None:
            self._sync_members()
            for peer_id, name, _ in ev.lobby.members:
                if peer_id in world.players:
                    world.players[peer_id].name = name
        elif isinstance(ev, MessageReceived):
            if ev.peer_id not in world.players:
                return  # not in this match: a late event from a lobby we left earlier
            kind = ev.body.get("t") if isinstance(ev.body, dict) else None
            self.event_kinds[ev.peer_id][str(kind)] += 1
            self._send(game.apply_event(world, ev.peer_id, ev.body))

    def _notice(self, text: str) -> None:
        self.world.say(text)
        self.notices.append(text)
        del self.notices[:-NOTICES_KEPT]

    def _send(self, outgoing: list[game.Outgoing]) -> None:
        for out in outgoing:
            self.net.send_event(out.event, to=out.to)

    def _sample_rtt(self) -> None:
        for peer_id in self.world.players:
            if peer_id == self.world.me:
                continue
            rtt = self.net.link(peer_id).rtt_ms
            if rtt is not None:
                self.rtt_history.setdefault(peer_id, deque(maxlen=RTT_HISTORY)).append(rtt)

    # --- views --------------------------------------------------------------------------------

    def hud(self, show_net_graph: bool, fps: float, help_lines: tuple[str, ...] = ()) -> HudInfo:
        """What the sidebar and the net graph show this frame."""
        rows = []
        if show_net_graph:
            for player in self.world.players.values():
                if player.id == self.world.me:
                    continue
                link = self.net.link(player.id)
                rows.append(NetRow(player.name, player.color, link.rtt_ms, link.jitter_ms,
                                   link.loss, link.kbps_in, link.kbps_out, link.interp_ms,
                                   list(self.rtt_history.get(player.id, ())), link.path))
        return HudInfo(code=self.code, host_name=self.world.name_of(self.world.host_id),
                       conditioner=self.net.conditioner_label, fps=fps,
                       show_net_graph=show_net_graph, net_rows=rows, help_lines=help_lines)

    def summary(self) -> dict[str, Any]:
        """The headless ``--json`` report (docs/demo.md describes every field).

        Times are in milliseconds with one decimal, shares (loss) with four.
        """
        self.net.count_snapshots()
        counters = self.net.counters
        stats = {}
        for peer_id in counters.peers_seen:
            link = self.net.link(peer_id)
            stats[peer_id] = {"rtt_ms": _round(link.rtt_ms, 1), "loss": _round(link.loss, 4),
                              "jitter_ms": _round(link.jitter_ms, 1)}
        me = self.world.local
        return {
            "peer_id": self.world.me,
            "name": me.name if me else "",
            "role": self.role,
            "lobby": self.code,
            "host": self.world.host_id,
            "bots": self.bots,
            "peers_seen": list(counters.peers_seen),
            "peers_connected": self.net.peers,
            "names": {peer: self.net.name_of(peer) for peer in counters.peers_seen},
            "snapshots_received": dict(counters.snapshots),
            "events_received": dict(counters.events),
            "events_by_kind": {peer: dict(kinds) for peer, kinds in self.event_kinds.items()},
            "host_changes": list(counters.host_changes),
            "since_last_host_change": {
                "snapshots_received": dict(counters.snapshots_since_host_change),
                "events_received": dict(counters.events_since_host_change),
            },
            "stats": stats,
            "score": me.score if me else 0,
            "scores": {p.id: p.score for p in self.world.players.values()},
            "frames": self.frames,
            "seconds": round(self.world.time, 1),
            "gems": len(self.world.pickups),
            "gems_spawned": dict(self.world.gems_spawned),
            "notices": list(self.notices),
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
