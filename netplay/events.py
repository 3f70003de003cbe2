"""Events a game sees (frozen dataclasses, no aiortc or pyee types).

Read them with ``async for ev in mesh.events()`` or ``net.poll()``:

- :class:`PeerJoined`: a peer connection is up with every channel open.
- :class:`PeerLeft`: a peer is gone, with a reason (see :data:`LeaveReason`). Reported once per
  connected period; a peer whose link came back after ``"timed_out"`` joins again.
- :class:`HostChanged`: the lobby has a new host (host migration).
- :class:`LobbyUpdated`: the lobby's state changed (members, lock, metadata), or we left it.
- :class:`LobbyConnectionChanged`: the lobby server went away or came back (peers keep working).
- :class:`MessageReceived`: a message arrived on a channel other than "state".
- :class:`MessagesUndelivered`: a peer is gone for good and reliable messages sent to it
  were never acknowledged (nothing is lost silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from .protocol import LobbyInfo, LobbyLeaveReason, PeerId

__all__ = [
    "Event",
    "HostChanged",
    "LeaveReason",
    "LobbyConnectionChanged",
    "LobbyUpdated",
    "MessageReceived",
    "MessagesUndelivered",
    "PeerJoined",
    "PeerLeft",
]

LeaveReason: TypeAlias = Literal[LobbyLeaveReason, "connection_failed"]
"""Why a peer left:

- ``"left"``: it left the lobby or closed its session;
- ``"kicked"``: the host removed it;
- ``"timed_out"``: nothing heard from it for ``disconnect_timeout`` (crash, network loss);
- ``"connection_failed"``: no peer connection could be made (after the allowed attempts);
- ``"disconnected"``: the lobby lost it and its resume grace period ran out.
"""


@dataclass(frozen=True)
class PeerJoined:
    """A peer is connected: every channel to it is open."""

    peer_id: PeerId
    """The lobby-assigned id of the peer."""
    name: str
    """Its display name."""


@dataclass(frozen=True)
class PeerLeft:
    """A peer is gone (or unreachable); its connection is closed."""

    peer_id: PeerId
    """The lobby-assigned id of the peer."""
    reason: LeaveReason
    """Why it left."""
    detail: str = field(default="", compare=False)
    """A sentence for people (logs, a "could not connect" screen), or ``""``. With
    ``"connection_failed"`` it says what went wrong, for example that no candidate pair
    worked and neither player had a TURN relay candidate (a TURN server is needed; see
    docs/nat.md). Not part of equality: compare ``peer_id`` and ``reason``."""


@dataclass(frozen=True)
class HostChanged:
    """The lobby's host changed (the earliest-joined remaining member takes over)."""

    host: PeerId
    """The new host's peer id."""
    is_me: bool
    """True when this session is the new host."""


@dataclass(frozen=True)
class LobbyUpdated:
    """The lobby's state changed; ``lobby`` is ``None`` after leaving it."""

    lobby: LobbyInfo | None
    """The new lobby state."""


@dataclass(frozen=True)
class LobbyConnectionChanged:
    """The WebSocket to the lobby server dropped or came back; peer links are unaffected."""

    connected: bool
    """True when (re)connected."""
    resumed: bool
    """True when the lobby gave back our peer id and seat (resume token accepted)."""


@dataclass(frozen=True)
class MessageReceived:
    """A message arrived on a channel other than "state"."""

    peer_id: PeerId
    """Sender."""
    channel: str
    """Channel name."""
    body: Any
    """The decoded value, exactly as the sender passed it."""


@dataclass(frozen=True)
class MessagesUndelivered:
    """A peer is gone for good (after its :class:`PeerLeft`) and ``count`` reliable messages
    sent to it were never acknowledged: they may not have arrived. While a link to a peer is
    rebuilt, nothing is reported: its messages are resent on the new link, exactly once."""

    peer_id: PeerId
    """The peer that did not receive them."""
    count: int
    """How many messages (each counted once, however big)."""


Event: TypeAlias = (
    PeerJoined | PeerLeft | HostChanged | LobbyUpdated | LobbyConnectionChanged | MessageReceived
    | MessagesUndelivered
)
"""Any event a mesh reports."""
