"""Lobby server settings: one frozen dataclass, filled from defaults, the environment and the CLI.

Every field can be set by the environment variable ``NETPLAY_LOBBY_<FIELD>`` (for example
``NETPLAY_LOBBY_PORT=9000``) and by the command-line option ``--<field-with-dashes>``; the command
line wins over the environment, which wins over the defaults. List fields take comma-separated
values (``NETPLAY_LOBBY_ALLOWED_ORIGINS=https://a.example,https://b.example``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = "NETPLAY_LOBBY_"

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
WS_IMPLS = ("direct", "asgi")
"""Values of ``Settings.ws_impl``."""


@dataclass(frozen=True)
class Settings:
    """Everything the lobby server can be told. All fields have working defaults."""

    host: str = "127.0.0.1"
    """Interface to listen on. Use 0.0.0.0 to accept connections from other machines."""
    port: int = 8765
    """TCP port to listen on (0 picks a free one)."""
    log_level: str = "info"
    """One of critical, error, warning, info, debug."""
    ssl_certfile: str | None = None
    """TLS certificate (PEM). With ``ssl_keyfile`` the server speaks https/wss."""
    ssl_keyfile: str | None = None
    """TLS private key (PEM)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to open the WebSocket (exact match, ``*`` for any). Empty: no check.
    Connections without an ``Origin`` header (native games) are always allowed."""

    max_message_bytes: int = 64 * 1024
    """Largest accepted frame (UTF-8 bytes); larger ones are answered with ``too_large``."""
    rate: float = 50.0
    """Sustained messages per second per connection (token bucket refill rate)."""
    burst: int = 200
    """Token bucket size: messages a connection may send at once before ``rate_limited``."""
    max_strikes: int = 20
    """Abusive errors (bad_message, too_large, rate_limited, ...) a connection may cause in a
    burst (one strike is forgiven per second); one more closes it with code 1008."""
    max_lobbies: int = 10_000
    """Open lobbies per server; more are refused with ``too_many_lobbies``."""
    max_metadata_bytes: int = 2048
    """Largest lobby metadata (or quick-match filter), as compact JSON, in bytes."""
    max_name_length: int = 32
    """Longest display name in characters (names must be printable, not blank)."""
    idle_timeout: float = 30.0
    """Seconds a connection may send nothing (not even ``ping``) before it is dropped."""
    resume_grace: float = 10.0
    """Seconds a dropped peer keeps its id and lobby seat for a ``hello`` with its resume token.
    The other members see ``peer_left`` only after this. 0 disables resuming."""

    max_connections_per_ip: int = 64
    """Open WebSocket connections from one client address; more are answered ``rate_limited``
    and closed with code 1013. Behind a reverse proxy, the address comes from its
    ``X-Forwarded-For`` header (uvicorn's ``--forwarded-allow-ips``)."""
    hello_timeout: float = 10.0
    """Seconds a new connection has to send a valid ``hello``; then it is answered
    ``not_authenticated`` and closed with code 1008."""
    max_lobbies_per_ip: int = 8
    """Lobbies that connections from one client address may host at once (created by ``host``
    or ``quick_match``); more are refused with ``too_many_lobbies``."""
    password_attempts: int = 10
    """Failed joins (wrong password or unknown code) one client address may make per minute,
    in a burst of that many; then every join from it is answered ``rate_limited`` until the
    allowance refills, whether the code exists or not."""
    redis_url: str | None = None
    """Redis that holds lobbies and sessions (``redis://host:6379/0``, ``rediss://`` for TLS,
    ``unix:///path/redis.sock``): every instance given the same Redis shares its lobbies.
    Default: none, everything in this process's memory."""
    redis_prefix: str = "netplay:"
    """Prefix of every Redis key and channel, so several deployments can share one Redis."""
    workers: int = 1
    """Worker processes (uvicorn's workers). More than one needs redis_url."""
    ws_impl: str = "direct"
    """How ``/ws`` is served: ``direct`` (below ASGI, on the socket: signaling/direct.py, the
    faster and leaner) or ``asgi`` (through the ASGI app, on uvicorn's WebSocket protocol)."""

    auth_secret: str | None = None
    """When set, ``hello`` must carry a token minted with this secret
    (see :func:`signaling.auth.mint_token`)."""

    stun_urls: tuple[str, ...] = ()
    """STUN servers handed to clients in ``welcome`` (``stun:host:port``). Default: none."""
    turn_urls: tuple[str, ...] = ()
    """TURN servers handed to clients (``turn:host:3478?transport=udp``, ``turns:...``)."""
    turn_secret: str | None = None
    """coturn's ``static-auth-secret`` (``use-auth-secret``): the lobby mints short-lived TURN REST
    API credentials from it for each peer. Required with ``turn_urls``."""
    turn_ttl: int = 86_400
    """Lifetime of minted TURN credentials, in seconds."""

    @property
    def ws_max_size(self) -> int:
        """Largest WebSocket frame uvicorn accepts. Frames up to this size get a polite
        ``too_large`` error from the app; larger ones make uvicorn close the socket (1009)."""
        return max(4 * self.max_message_bytes, 1 << 20)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65_535:
            problems.append(f"port must be 0-65535, not {self.port}")
        if self.ws_impl not in WS_IMPLS:
            problems.append(f"ws_impl must be one of {', '.join(WS_IMPLS)}, not {self.ws_impl!r}")
        if self.log_level.lower() not in _LOG_LEVELS:
            problems.append(f"log_level must be one of {', '.join(_LOG_LEVELS)}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            problems.append("ssl_certfile and ssl_keyfile must be given together")
        for name in ("max_message_bytes", "burst", "max_lobbies", "max_metadata_bytes",
                     "max_name_length", "turn_ttl", "max_strikes", "max_connections_per_ip",
                     "max_lobbies_per_ip", "password_attempts", "workers"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("rate", "idle_timeout", "hello_timeout"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.resume_grace < 0:
            problems.append("resume_grace must not be negative")
        if self.workers > 1 and not self.redis_url:
            problems.append(f"workers={self.workers} needs redis_url (--redis-url, "
                            f"{ENV_PREFIX}REDIS_URL): worker processes share lobbies only "
                            "through Redis")
        if self.turn_urls and not self.turn_secret:
            problems.append("turn_urls need turn_secret (TURN REST API credentials)")
        if problems:
            raise ValueError("invalid lobby settings: " + "; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``NETPLAY_LOBBY_*`` variables, then ``overrides`` (e.g. from the CLI).

        ``overrides`` whose value is ``None`` are ignored, so unset CLI options fall through.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_var(f.name))
            if raw is not None and raw.strip() != "":
                values[f.name] = convert(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def env_var(field_name: str) -> str:
    """The environment variable of a field: ``port`` -> ``NETPLAY_LOBBY_PORT``."""
    return ENV_PREFIX + field_name.upper()


def field_kind(name: str) -> type:
    """The scalar type of a field: str, int, float or tuple (a comma-separated list)."""
    default = _DEFAULTS[name]
    if isinstance(default, tuple):
        return tuple
    if isinstance(default, bool):  # pragma: no cover - no bool fields yet
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return str


def convert(name: str, raw: str) -> Any:
    """Parse the text of an environment variable or CLI option for field ``name``."""
    kind = field_kind(name)
    try:
        if kind is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return kind(raw.strip())
    except ValueError:
        raise ValueError(f"{env_var(name)}: expected {kind.__name__}, got {raw!r}") from None


_DEFAULTS: dict[str, Any] = {
    f.name: (f.default if f.default is not dataclasses.MISSING else None)
    for f in dataclasses.fields(Settings)
}
