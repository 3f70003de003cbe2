"""The lobby interface: the :class:`Backend` seam and what every backend shares.

Plain Python: no Starlette, no sockets, no storage. The WebSocket app (``signaling.app``) hands
each connection a :data:`Deliver` callback and calls the :class:`Backend` methods; a backend
answers requests and tells other peers what changed by calling their callbacks with encoded
frames. Two backends implement it:

- :class:`signaling.memory.MemoryBackend` keeps everything in this process (the default);
- :class:`signaling.redis_backend.RedisBackend` keeps lobbies and sessions in Redis, so several
  lobby instances share them and relay signals to each other through pub/sub.

The rules both follow live here: lobby codes, name and metadata checks, who hosts next
(:func:`successor`), which lobbies a quick-match or listing considers (:func:`matches`).
"""

from __future__ import annotations

import hmac
import json
import secrets
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from netplay.protocol import (
    ErrorCode,
    Host,
    Join,
    LobbyInfo,
    LobbyLeaveReason,
    LobbySummary,
    PeerId,
    QuickMatch,
    Signal,
)

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "HOST_GRACE",
    "SUSPENDED_BUFFER",
    "Backend",
    "Deliver",
    "LeaveReason",
    "LobbyError",
    "Seated",
    "Session",
    "check_joinable",
    "check_metadata",
    "check_name",
    "matches",
    "new_code",
    "normalize_code",
    "successor",
]

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""Lobby code characters: upper-case letters and digits without look-alikes (no I, L, O, 0, 1)."""
CODE_LENGTH = 6

HOST_GRACE = 1.5
"""Seconds a host whose connection dropped has to resume before the host role moves on. A
network blip (the client reconnects after 0.25 s) keeps the host; a killed host is replaced
that long after its drop, long before the resume grace (10 s by default) ends."""

SUSPENDED_BUFFER = 256
"""Relayed signals kept for a dropped peer until it resumes (oldest dropped first)."""

Deliver = Callable[[str], None]
"""Hands one encoded server frame to a connection. Must not block (the app queues it)."""

LeaveReason = LobbyLeaveReason
"""Why a member left (the protocol's ``peer_left.reason``)."""


class LobbyError(Exception):
    """A request was refused; ``code`` goes on the wire in an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Session:
    """What a connection learns from :meth:`Backend.connect` or :meth:`Backend.resume`."""

    peer_id: PeerId
    resume_token: str
    resumed: bool = False
    lobby: LobbyInfo | None = None
    backlog: tuple[str, ...] = ()
    """Frames held for the peer while it was away, to send right after ``welcome``."""


def normalize_code(code: str) -> str:
    """Lobby codes are case-insensitive and may be typed with stray spaces or dashes."""
    return code.strip().replace("-", "").replace(" ", "").upper()


def new_code(taken: Callable[[str], bool]) -> str:
    """A random lobby code for which ``taken(code)`` is false (longer ones when nearly all
    codes of :data:`CODE_LENGTH` are in use)."""
    length = CODE_LENGTH
    while True:
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
            if not taken(code):
                return code
        length += 1  # pragma: no cover - only when nearly a billion codes are in use


class Seated(Protocol):
    """A lobby member as :func:`successor` sees it."""

    @property
    def seq(self) -> int: ...

    @property
    def connected(self) -> bool: ...


S = TypeVar("S", bound=Seated)


def successor(members: Iterable[S]) -> S:
    """Who hosts a lobby next: the earliest-joined (lowest ``seq``) member that is connected,
    or, when every member is away in its resume grace, the earliest-joined member."""
    members = list(members)
    connected = [m for m in members if m.connected]
    return min(connected or members, key=lambda m: m.seq)


def matches(game: str, game_version: str, metadata: Mapping[str, Any], want_game: str | None,
            want_version: str | None, filter: Mapping[str, Any]) -> bool:
    """Whether a lobby of ``game``/``game_version`` with ``metadata`` is what a quick-match or
    listing asks for (``None`` matches any game or version; ``filter`` must match exactly)."""
    return ((want_game is None or game == want_game)
            and (want_version is None or game_version == want_version)
            and all(k in metadata and metadata[k] == v for k, v in filter.items()))


def check_name(name: str, max_length: int) -> str:
    """Validate a display name (printable, not blank, not too long); returns it stripped."""
    stripped = name.strip()
    if not stripped:
        raise LobbyError(ErrorCode.BAD_NAME, "display name must not be blank")
    if len(stripped) > max_length:
        raise LobbyError(ErrorCode.BAD_NAME, f"display name is {len(stripped)} characters, "
                                             f"at most {max_length} allowed")
    for ch in stripped:
        if unicodedata.category(ch)[0] == "C" or (ch.isspace() and ch != " "):
            raise LobbyError(ErrorCode.BAD_NAME,
                             f"display name contains a control character (U+{ord(ch):04X})")
    return stripped


def check_joinable(code: str, *, password: str | None, given: str | None, locked: bool,
                   size: int, max_players: int) -> None:
    """Refuse a ``join`` of an existing lobby, checking in the documented order: the password
    (compared in constant time), the lock, the size."""
    if password is not None and not hmac.compare_digest((given or "").encode(),
                                                        password.encode()):
        raise LobbyError(ErrorCode.BAD_PASSWORD, f"wrong password for lobby {code}")
    if locked:
        raise LobbyError(ErrorCode.LOBBY_LOCKED, f"lobby {code} is locked by its host")
    if size >= max_players:
        raise LobbyError(ErrorCode.LOBBY_FULL, f"lobby {code} is full ({max_players} players)")


def check_metadata(metadata: Mapping[str, Any], max_bytes: int, what: str = "metadata") -> None:
    """Refuse metadata whose compact JSON is larger than ``max_bytes``."""
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise LobbyError(ErrorCode.METADATA_TOO_LARGE,
                         f"{what} is {size} bytes of JSON, at most {max_bytes} allowed")


class Backend(ABC):
    """Lobby state and relay, shared by every connection of one (or several) server(s).

    Request methods answer the requester through its :data:`Deliver` callback (so the answer
    is ordered with the events it causes), echo ``request_id``, and raise :class:`LobbyError`
    when refused, having changed nothing.
    """

    # --- sessions ---

    @abstractmethod
    async def connect(self, name: str, deliver: Deliver) -> Session:
        """Register a new peer with a fresh id and resume token."""

    @abstractmethod
    async def resume(self, token: str, deliver: Deliver) -> Session | None:
        """Reattach a peer by its resume token; ``None`` when unknown or expired.

        A peer still attached to another connection is moved to this one. The peer keeps the
        display name it had. The caller sends ``welcome`` and then ``Session.backlog``, so an
        implementation must not call ``deliver`` before it returns.
        """

    @abstractmethod
    async def disconnect(self, peer_id: PeerId, reason: LeaveReason, grace: float) -> None:
        """The peer's connection is gone. With ``grace > 0`` its seat is kept that long for
        :meth:`resume`; otherwise (or then) it leaves its lobby with ``reason``.

        A host whose connection is gone stops hosting after ``host_grace`` seconds (at most
        ``grace``) unless it resumes first: the role passes to the earliest-joined member still
        connected (``host_changed``), and a host that resumes later comes back as an ordinary
        member. The caller runs :meth:`expire` ``host_grace`` seconds after a drop."""

    host_grace: float = HOST_GRACE
    """Seconds a dropped host keeps the role while it may resume (see :meth:`disconnect`)."""

    @abstractmethod
    async def expire(self) -> None:
        """Remove the peers whose grace period has run out, and move the host role of lobbies
        whose dropped host did not come back within :data:`HOST_GRACE`."""

    # --- lobby requests ---

    @abstractmethod
    async def host(self, peer_id: PeerId, request: Host) -> LobbyInfo:
        """Create a lobby hosted by ``peer_id``."""

    @abstractmethod
    async def join(self, peer_id: PeerId, request: Join) -> LobbyInfo:
        """Join a lobby by code."""

    @abstractmethod
    async def quick_match(self, peer_id: PeerId, request: QuickMatch) -> LobbyInfo:
        """Join the fullest matching open public lobby, or create one."""

    @abstractmethod
    async def list_lobbies(self, game: str | None = None,
                           filter: Mapping[str, Any] | None = None) -> list[LobbySummary]:
        """Public lobbies that can be joined (not locked, not full), fullest first."""

    @abstractmethod
    async def leave(self, peer_id: PeerId, request_id: int | None = None) -> None:
        """Leave the current lobby."""

    @abstractmethod
    async def kick(self, peer_id: PeerId, target: PeerId, request_id: int | None = None) -> None:
        """Host only: remove ``target`` from the lobby."""

    @abstractmethod
    async def set_locked(self, peer_id: PeerId, locked: bool,
                         request_id: int | None = None) -> LobbyInfo:
        """Host only: lock or unlock the lobby."""

    @abstractmethod
    async def set_metadata(self, peer_id: PeerId, metadata: dict[str, Any],
                           request_id: int | None = None) -> LobbyInfo:
        """Host only: replace the lobby's metadata."""

    @abstractmethod
    async def relay(self, peer_id: PeerId, request: Signal) -> None:
        """Send a signal to a member of the sender's lobby, with ``from`` stamped."""

    def relay_now(self, peer_id: PeerId, request: Signal) -> bool:
        """Do :meth:`relay` at once if that needs no I/O and return True, or do nothing and
        return False (then the caller awaits :meth:`relay`). The direct WebSocket path
        (``signaling.direct``) relays a signal this way without a task; the default is
        False."""
        return False

    # --- introspection ---

    @abstractmethod
    async def stats(self) -> dict[str, int]:
        """Counts for ``/healthz``."""

    # --- lifecycle (backends that hold connections override these) ---

    async def start(self) -> None:
        """Called once by the app before it serves (connect, start background tasks)."""
        return None

    async def close(self) -> None:
        """Called once by the app when it stops."""
        return None

    async def health(self) -> str | None:
        """``None`` while the backend can serve; otherwise why not (``/healthz`` answers 503
        with it)."""
        return None

    on_evict: Callable[[PeerId, bool], None] | None = None
    """Set by the app: ``on_evict(peer_id, lost)`` closes the connection of a peer attached to
    this server without :meth:`disconnect`: it resumed on another server (``lost`` false), or
    its session is gone from the shared state (``lost`` true: Redis restarted without
    persistence), so the client must start a new one."""
