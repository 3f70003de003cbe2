"""The lobby wire protocol: JSON text frames over a WebSocket at ``/ws``.

This module is the only definition of the protocol. The lobby server (``signaling/``) and the
game-side lobby client both import it; it does no I/O.

Every frame is a JSON object with a ``type`` field, validated strictly (no type coercion).
Client requests may carry an integer ``id``; every request that carries one gets exactly one
reply echoing it: its natural reply (``welcome``, ``lobby``, ``lobby_list``, ``pong``), ``ok``
(``leave``, ``kick``, ``signal``) or ``error``. Messages without ``id`` are events.
docs/lobby.md describes every message, event and error code.

Session
    1. The client sends ``hello`` with :data:`PROTOCOL_VERSION`. A different version is answered
       with an ``error`` (code ``unsupported_version``) naming both versions, then the socket is
       closed.
    2. The server answers ``welcome``: the server-assigned peer id, a resume token and the ICE
       servers (STUN/TURN, with short-lived TURN credentials) the game should use.
    3. The client hosts (``host``), joins by code (``join``), quick-matches (``quick_match``) or
       lists lobbies (``list``). Joining answers ``lobby`` with the full lobby state; the other
       members receive ``peer_joined``.
    4. ``signal`` relays WebRTC offers, answers and ICE candidates to one member of the same lobby.
       The server stamps ``from`` itself; a client can never choose it.

Who offers (glare-free rule)
    For every pair of members, the member that joined the lobby *earlier* (the lower ``seq`` in
    :class:`Member`) sends the offer; the later one only answers. So a newcomer waits for offers
    from everyone already present, and a re-established connection uses the same rule. Two offers
    never cross.

Resume
    A client whose WebSocket drops may reconnect and send ``hello`` with its ``resume`` token
    within the server's grace period; it gets its peer id and lobby seat back, and the other
    members see nothing. After the grace period the others receive ``peer_left``. The server
    drops connections that send nothing (send ``ping`` when idle) after its idle timeout.

Host migration
    The host is the earliest-joined member still connected to the lobby. When the host leaves
    or is kicked, the others receive ``host_changed`` at once; when its connection drops, after
    a short host grace (1.5 s) unless it resumes first, not after its whole resume grace (it
    keeps its seat and resumes as an ordinary member). docs/lobby.md, "Host migration".

Errors
    Every error is ``{"type": "error", "code": ..., "message": ..., "id": ...}`` with one of the
    stable codes in :class:`ErrorCode`. Malformed frames are answered with ``bad_message`` and the
    connection stays open.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import from_json, to_json

from .errors import ProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "AnswerPayload",
    "CandidatePayload",
    "ClientMessage",
    "ErrorCode",
    "IceServerInfo",
    "LobbyInfo",
    "LobbyLeaveReason",
    "LobbySummary",
    "Member",
    "OfferPayload",
    "PeerId",
    "ServerMessage",
    "SignalPayload",
    "encode",
    "encode_relayed_signal",
    "hello_version_of",
    "offers_to",
    "parse_client",
    "parse_server",
]

PROTOCOL_VERSION = 1
"""The protocol version this module speaks. Bumped on every incompatible change."""

PeerId: TypeAlias = str
"""A peer id assigned by the lobby server (short, URL-safe)."""

MAX_METADATA_KEYS = 32
MAX_PLAYERS = 32
"""The most players a lobby may hold (``host``/``quick_match``'s ``max_players``). A full mesh
costs each peer work for every other peer: see the mesh figures in bench/RESULTS.md before
going past 16 at 30 Hz."""
MAX_REQUEST_ID = 2**53
"""Largest request id (JavaScript's safe integer range); larger ones are ``bad_message``."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""A display name. The server applies its own, stricter limit (``bad_name``)."""
Code = Annotated[str, StringConstraints(min_length=1, max_length=16)]
GameName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""A display name. The server applies its own, stricter limit (``bad_name``)."""
Metadata = Annotated[dict[str, Any], Field(max_length=MAX_METADATA_KEYS)]
RequestId = Annotated[int, Field(ge=0, le=MAX_REQUEST_ID)]


LobbyLeaveReason: TypeAlias = Literal["left", "kicked", "disconnected", "timed_out"]
"""Why the lobby says a member left (``peer_left.reason``)."""


class ErrorCode(StrEnum):
    """Stable, machine-readable error codes sent in ``error`` messages."""

    BAD_MESSAGE = "bad_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_AUTHENTICATED = "not_authenticated"
    BAD_TOKEN = "bad_token"
    ALREADY_IN_LOBBY = "already_in_lobby"
    LOBBY_NOT_FOUND = "lobby_not_found"
    LOBBY_FULL = "lobby_full"
    LOBBY_LOCKED = "lobby_locked"
    BAD_PASSWORD = "bad_password"
    NOT_HOST = "not_host"
    NOT_IN_LOBBY = "not_in_lobby"
    UNKNOWN_PEER = "unknown_peer"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    TOO_MANY_LOBBIES = "too_many_lobbies"
    BAD_NAME = "bad_name"
    METADATA_TOO_LARGE = "metadata_too_large"
    INTERNAL = "internal"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- signal payloads (relayed unread by the server) -------------------------------------------


class OfferPayload(_Message):
    """A WebRTC SDP offer."""

    kind: Literal["offer"] = "offer"
    sdp: Annotated[str, StringConstraints(max_length=60_000)]
    attempt: int = 0
    """Connection attempt number, so stale answers to an abandoned attempt are ignored."""


class AnswerPayload(_Message):
    """A WebRTC SDP answer."""

    kind: Literal["answer"] = "answer"
    sdp: Annotated[str, StringConstraints(max_length=60_000)]
    attempt: int = 0


class CandidatePayload(_Message):
    """One trickled ICE candidate (browsers trickle; aiortc puts all candidates in the SDP).

    An empty ``candidate`` string means end of candidates.
    """

    kind: Literal["candidate"] = "candidate"
    candidate: Annotated[str, StringConstraints(max_length=1_000)]
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    attempt: int = 0


SignalPayload: TypeAlias = Annotated[
    OfferPayload | AnswerPayload | CandidatePayload, Field(discriminator="kind")
]


# --- shared records ---------------------------------------------------------------------------


class Member(_Message):
    """One member of a lobby."""

    id: PeerId
    name: str
    seq: int
    """Join order within the lobby (lower joined earlier). Decides who offers."""


class LobbyInfo(_Message):
    """The full state of one lobby, as its members see it."""

    code: str
    host: PeerId
    members: list[Member]
    max_players: int
    public: bool
    locked: bool
    has_password: bool
    game: str
    game_version: str
    metadata: dict[str, Any]


class LobbySummary(_Message):
    """One row of a lobby listing."""

    code: str
    players: int
    max_players: int
    game: str
    game_version: str
    metadata: dict[str, Any]
    has_password: bool
    host_name: str


class IceServerInfo(_Message):
    """A STUN or TURN server the client should use (TURN credentials are short-lived)."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


# --- client -> server -------------------------------------------------------------------------


class Hello(_Message):
    """First message of a connection: protocol version and who we are."""

    type: Literal["hello"] = "hello"
    id: RequestId | None = None
    v: int
    name: Name
    token: Annotated[str, StringConstraints(max_length=2_048)] | None = None
    """Auth token minted by the game's backend, required when the lobby has an auth secret."""
    resume: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Resume token from an earlier ``welcome``, to get the same peer id and seat back."""


class Host(_Message):
    """Create a lobby and become its host."""

    type: Literal["host"] = "host"
    id: RequestId | None = None
    max_players: Annotated[int, Field(ge=2, le=MAX_PLAYERS)] = 8
    public: bool = True
    password: Annotated[str, StringConstraints(max_length=128)] | None = None
    game: GameName
    game_version: Annotated[str, StringConstraints(max_length=64)] = ""
    metadata: Metadata = Field(default_factory=dict)


class Join(_Message):
    """Join a lobby by its code (case-insensitive)."""

    type: Literal["join"] = "join"
    id: RequestId | None = None
    code: Code
    password: Annotated[str, StringConstraints(max_length=128)] | None = None


class QuickMatch(_Message):
    """Join the fullest open public lobby for this game/version/filter, or create one."""

    type: Literal["quick_match"] = "quick_match"
    id: RequestId | None = None
    game: GameName
    game_version: Annotated[str, StringConstraints(max_length=64)] = ""
    filter: Metadata = Field(default_factory=dict)
    """Lobby metadata that must match exactly (and becomes the new lobby's metadata)."""
    max_players: Annotated[int, Field(ge=2, le=MAX_PLAYERS)] = 8


class ListLobbies(_Message):
    """List open public lobbies, optionally for one game and matching a metadata filter."""

    type: Literal["list"] = "list"
    id: RequestId | None = None
    game: GameName | None = None
    filter: Metadata = Field(default_factory=dict)


class Leave(_Message):
    """Leave the current lobby (the connection stays open)."""

    type: Literal["leave"] = "leave"
    id: RequestId | None = None


class Signal(_Message):
    """Relay a WebRTC signal to one member of our lobby."""

    type: Literal["signal"] = "signal"
    id: RequestId | None = None
    to: PeerId
    payload: SignalPayload


class Kick(_Message):
    """Host only: remove a member from the lobby."""

    type: Literal["kick"] = "kick"
    id: RequestId | None = None
    peer: PeerId


class Lock(_Message):
    """Host only: refuse new joins."""

    type: Literal["lock"] = "lock"
    id: RequestId | None = None


class Unlock(_Message):
    """Host only: accept new joins again."""

    type: Literal["unlock"] = "unlock"
    id: RequestId | None = None


class SetMetadata(_Message):
    """Host only: replace the lobby's metadata."""

    type: Literal["set_metadata"] = "set_metadata"
    id: RequestId | None = None
    metadata: Metadata


class Ping(_Message):
    """Keep-alive; the server answers ``pong`` with the same ``t``."""

    type: Literal["ping"] = "ping"
    id: RequestId | None = None
    t: float | None = None


ClientMessage: TypeAlias = Annotated[
    Hello
    | Host
    | Join
    | QuickMatch
    | ListLobbies
    | Leave
    | Signal
    | Kick
    | Lock
    | Unlock
    | SetMetadata
    | Ping,
    Field(discriminator="type"),
]


# --- server -> client -------------------------------------------------------------------------


class Welcome(_Message):
    """Answer to ``hello``."""

    type: Literal["welcome"] = "welcome"
    id: RequestId | None = None
    v: int = PROTOCOL_VERSION
    peer_id: PeerId
    resume_token: str
    ice_servers: list[IceServerInfo] = Field(default_factory=list)
    resumed: bool = False
    """True when a resume token gave back an earlier peer id (and lobby seat)."""
    lobby: LobbyInfo | None = None
    """The lobby we are (still) in after a resume."""


class LobbyState(_Message):
    """The full state of our lobby: sent on joining and whenever it changes."""

    type: Literal["lobby"] = "lobby"
    id: RequestId | None = None
    lobby: LobbyInfo


class PeerJoined(_Message):
    """A member joined our lobby."""

    type: Literal["peer_joined"] = "peer_joined"
    peer: Member


class PeerLeft(_Message):
    """A member left our lobby. ``reason``: left, kicked, disconnected or timed_out."""

    type: Literal["peer_left"] = "peer_left"
    peer_id: PeerId
    reason: LobbyLeaveReason


class HostChanged(_Message):
    """The lobby has a new host: the earliest-joined member still connected. Sent when the host
    leaves, is kicked, or its connection dropped and it did not resume within the host grace
    (the old host may keep its seat)."""

    type: Literal["host_changed"] = "host_changed"
    host: PeerId


class LobbyList(_Message):
    """Answer to ``list``."""

    type: Literal["lobby_list"] = "lobby_list"
    id: RequestId | None = None
    lobbies: list[LobbySummary]


class RelayedSignal(_Message):
    """A signal from another member; ``from`` is stamped by the server."""

    type: Literal["signal"] = "signal"
    from_: PeerId = Field(alias="from")
    payload: SignalPayload


class Pong(_Message):
    """Answer to ``ping``."""

    type: Literal["pong"] = "pong"
    id: RequestId | None = None
    t: float | None = None


class Ok(_Message):
    """Success reply to a request that has no other reply (``leave``, ``kick``, ``signal``).

    Sent only when the request carried an ``id``.
    """

    type: Literal["ok"] = "ok"
    id: RequestId | None = None


class Error(_Message):
    """A request failed; ``code`` is stable, ``message`` is for humans."""

    type: Literal["error"] = "error"
    id: RequestId | None = None
    code: ErrorCode
    message: str


ServerMessage: TypeAlias = Annotated[
    Welcome
    | LobbyState
    | PeerJoined
    | PeerLeft
    | HostChanged
    | LobbyList
    | RelayedSignal
    | Pong
    | Ok
    | Error,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _parse(adapter: TypeAdapter[Any], data: str | bytes) -> Any:
    # Strict: JSON types must match exactly ("8" is not an int, "yes" is not a bool).
    try:
        return adapter.validate_json(data, strict=True)
    except ValidationError as exc:
        raise ProtocolError(f"invalid message: {_describe(exc)}") from exc


def parse_client(data: str | bytes) -> ClientMessage:
    """Parse and validate one client-to-server frame. Raises :class:`ProtocolError`."""
    return _parse(_client_adapter, data)  # type: ignore[no-any-return]


def parse_server(data: str | bytes) -> ServerMessage:
    """Parse and validate one server-to-client frame. Raises :class:`ProtocolError`."""
    return _parse(_server_adapter, data)  # type: ignore[no-any-return]


def _loose_object(data: str | bytes) -> dict[str, Any] | None:
    """A frame parsed as a JSON object without validation, or ``None``. Never raises: nesting
    deeper than the parser's limit and other malformed input give ``None`` (``json.loads``
    would raise ``RecursionError`` on deep nesting)."""
    try:
        obj = from_json(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def request_id_of(data: str | bytes) -> int | None:
    """Best-effort request id of a frame that failed validation (for the error reply): the
    ``id`` when it is a valid request id (an integer from 0 to 2^53), else ``None``."""
    obj = _loose_object(data)
    rid = obj.get("id") if obj is not None else None
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_REQUEST_ID:
        return rid
    return None


def hello_version_of(data: str | bytes) -> int | None:
    """Best-effort ``v`` of a ``hello`` frame that failed validation (another version's hello
    may carry fields this version does not know), so the mismatch can still be named."""
    obj = _loose_object(data)
    if obj is None or obj.get("type") != "hello":
        return None
    v = obj.get("v")
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 else None


def encode(message: BaseModel) -> str:
    """Serialise a protocol message to a JSON text frame (``from_`` is sent as ``from``)."""
    return message.model_dump_json(by_alias=True, exclude_none=True)


def encode_relayed_signal(sender: PeerId, payload: OfferPayload | AnswerPayload
                          | CandidatePayload) -> str:
    """The frame relaying ``payload`` from ``sender``: the same JSON as
    ``encode(RelayedSignal(from_=sender, payload=payload))``, built without validating the payload
    a second time (it was validated when its ``signal`` arrived). The relay's hot path."""
    frame = {"type": "signal", "from": sender, "payload": payload}
    return to_json(frame, by_alias=True, exclude_none=True).decode()


def offers_to(me: Member, other: Member) -> bool:
    """True when ``me`` must send the offer to ``other`` (the earlier member offers)."""
    return (me.seq, me.id) < (other.seq, other.id)
