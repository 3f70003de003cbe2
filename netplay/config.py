"""Configuration objects: :class:`MeshConfig`, :class:`ChannelConfig`, :class:`IceServer`.

All are frozen dataclasses, checked on construction (a bad value raises ``ValueError`` naming
the field). No I/O happens here, so the lobby server can import this module without aiortc.

```python
config = MeshConfig(
    lobby_url="ws://127.0.0.1:8765/ws",
    name="alice",
    channels=(ChannelConfig.unreliable("state"), ChannelConfig.reliable("events"),
              ChannelConfig.reliable("chat")),
    ice_servers=(IceServer(urls=("stun:stun-host.example:3478",)),),
)
```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._unpack import UnpackLimits
    from .conditioner import ConditionerConfig

__all__ = ["DEFAULT_CHANNELS", "ChannelConfig", "IceServer", "MeshConfig"]

MAX_CHANNELS = 64


@dataclass(frozen=True)
class ChannelConfig:
    """One channel of a mesh: a *lane* inside netplay's datagrams (see :mod:`netplay.lanes`).

    Its index in :attr:`MeshConfig.channels` is its lane id on the wire. A channel is reliable
    (every message arrives exactly once; ``ordered`` decides whether in order) or unreliable
    (``max_retransmits=0``: sent once, may be lost). Channel 0, "state", is the snapshot
    channel and has no lane of its own.
    """

    name: str
    """Name used by game code (``mesh.channel("chat")``); unique within a mesh."""
    ordered: bool = True
    """Deliver messages in the order they were sent."""
    max_retransmits: int | None = None
    """Give up on a message after this many retransmissions (``0``: never retransmit)."""
    max_packet_life_time: int | None = None
    """Not supported since wire version 2 (must stay ``None``): netplay's lanes are reliable
    or unreliable."""
    priority: int = 0
    """Lanes with a higher priority are served first when a datagram is filled; a big
    message on a low-priority lane never delays a higher one (nor the state snapshots,
    which always go first)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ChannelConfig.name must be a non-empty string")
        if self.max_retransmits is not None and self.max_packet_life_time is not None:
            raise ValueError(
                f"channel {self.name!r}: set max_retransmits or max_packet_life_time, not both"
            )
        for label in ("max_retransmits", "max_packet_life_time"):
            value = getattr(self, label)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"channel {self.name!r}: {label} must be an int >= 0")
        if self.max_retransmits not in (None, 0) or self.max_packet_life_time is not None:
            raise ValueError(
                f"channel {self.name!r}: partial reliability is not supported; use "
                f"ChannelConfig.reliable(name) or ChannelConfig.unreliable(name)")
        if self.max_retransmits == 0 and self.ordered:
            raise ValueError(
                f"channel {self.name!r}: an unreliable channel is delivered in arrival order, "
                f"not send order; use ChannelConfig.unreliable(name) (ordered=False)")
        if not isinstance(self.priority, int) or not -1000 < self.priority < 1000:
            raise ValueError(f"channel {self.name!r}: priority must be an int in -999..999")

    @property
    def is_reliable(self) -> bool:
        """True when every message is delivered (no retransmit or lifetime limit)."""
        return self.max_retransmits is None and self.max_packet_life_time is None

    @classmethod
    def reliable(cls, name: str, *, ordered: bool = True, priority: int = 0) -> ChannelConfig:
        """A reliable channel, ordered unless ``ordered=False``. Give big transfers
        (levels, replays, files) a channel with a lower ``priority`` than the game's events."""
        return cls(name, ordered=ordered, priority=priority)

    @classmethod
    def unreliable(cls, name: str, *, priority: int = 0) -> ChannelConfig:
        """An unordered channel whose messages are sent once (may be lost)."""
        return cls(name, ordered=False, max_retransmits=0, priority=priority)


DEFAULT_CHANNELS: tuple[ChannelConfig, ...] = (
    ChannelConfig("state", ordered=False, max_retransmits=0),
    ChannelConfig("events"),
)
"""Channel 0 "state" (unordered, no retransmits) and channel 1 "events" (reliable, ordered)."""


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server (``urls`` like ``"stun:host:3478"`` or ``"turn:host:3478"``)."""

    urls: tuple[str, ...]
    """Server URLs; a single string is accepted and wrapped."""
    username: str | None = None
    """TURN username."""
    credential: str | None = None
    """TURN password."""

    def __post_init__(self) -> None:
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        if not urls or not all(
            isinstance(u, str) and u.startswith(("stun:", "stuns:", "turn:", "turns:"))
            for u in urls
        ):
            raise ValueError(f"IceServer.urls must be stun:/turn: URLs, got {self.urls!r}")
        object.__setattr__(self, "urls", urls)


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"MeshConfig.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class MeshConfig:
    """Everything a :class:`~netplay.Mesh` needs. Only ``lobby_url`` is required."""

    lobby_url: str
    """WebSocket URL of the lobby, e.g. ``"ws://127.0.0.1:8765/ws"`` (``wss://`` for TLS)."""
    name: str = "player"
    """Display name shown to the other members (1-64 characters)."""
    channels: tuple[ChannelConfig, ...] = DEFAULT_CHANNELS
    """Channels; must start with an unreliable "state" and a reliable "events" channel.
    Extra channels may follow; a channel's index is its lane id on the wire."""
    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers. Default: none at all (never a public server)."""
    use_lobby_ice_servers: bool = True
    """Also use the ICE servers (with short-lived TURN credentials) the lobby hands out."""
    ice_transport_policy: Literal["all", "relay"] = "all"
    """``"relay"`` forces traffic through TURN."""
    ice_host_addresses: tuple[str, ...] | None = None
    """Gather host candidates only on these IP addresses or interface names (``("127.0.0.1",)``:
    this machine only; ``("eth0",)``: one LAN interface). ``None`` (the default): every
    non-loopback interface, plus ``127.0.0.1`` when ``lobby_url`` is on loopback
    (``127.0.0.1``, ``::1``, ``localhost``), so players on one machine connect with no
    setting while a host whose lobby runs on its own machine stays reachable from the LAN."""
    auth_token: str | None = None
    """Token from the game's backend, for lobbies that require one."""
    conditioner: ConditionerConfig | None = None
    """Simulated bad network applied to every link in both directions; ``None`` reads the
    ``NETPLAY_CONDITIONER`` environment variable (unset: a perfect link)."""
    connect_timeout: float = 10.0
    """Seconds to reach the lobby, and for one peer connection attempt to open its channels."""
    request_timeout: float = 10.0
    """Seconds to wait for the lobby's answer to a request (host, join, ...)."""
    disconnect_timeout: float = 2.5
    """A peer from which no datagram arrived for this long is reported as left
    ("timed_out"). Peers send at least every ``heartbeat_interval``, so a crashed or
    unplugged peer is reported within 3 s with the defaults."""
    heartbeat_interval: float = 0.2
    """A heartbeat goes to a peer when nothing else was sent to it for this long."""
    reconnect_attempts: int = 3
    """Fresh connection attempts for a failed peer link while both are in the lobby."""
    lobby_reconnect_delay: float = 0.25
    """First delay before reconnecting to a lost lobby (doubles up to 5 s, forever)."""
    lobby_ping_interval: float = 10.0
    """Seconds between protocol ``ping``s to the lobby. The lobby drops connections that send
    nothing for its ``idle_timeout`` (30 s by default), so keep this well below that."""
    send_rate_hz: float = 60.0
    """At most this many state datagrams per second per peer; faster sends coalesce."""
    state_size_warning: int = 1100
    """Warn once per peer when a state datagram is bigger than this many bytes."""
    max_message_size: int = 8 * 1024 * 1024
    """Largest reliable message accepted from a peer after reassembly (bytes)."""
    max_array_len: int = 1 << 20
    """Most elements in one array of a received message (msgpack unpack limit)."""
    max_map_len: int = 1 << 18
    """Most entries in one map of a received message (msgpack unpack limit)."""
    max_containers: int = 1 << 18
    """Most arrays and maps in one received message over 64 KiB. With the limits above and
    ``max_message_size`` this bounds what a hostile message can make a receiver allocate
    (an array of 16 Mi empty arrays would otherwise cost about 1 GiB)."""
    delta_compression: bool = True
    """Send states as deltas against the last state each peer acknowledged."""
    interpolate: Callable[[Any, Any, float], Any] | None = None
    """``interpolate(a, b, t)`` blends two states of a peer for :meth:`Mesh.interpolated`
    (``t`` in 0..1, beyond 1 when extrapolating). Default: numbers (also nested in lists and
    dicts) linearly, everything else from the nearer state."""
    max_queued: int = 10_000
    """Unread messages kept per channel queue, and unread ``MessageReceived`` events, once
    the game has read that queue (before its first read: 256); beyond, the oldest go with a
    WARNING. Lifecycle events are never dropped."""

    def __post_init__(self) -> None:
        if not isinstance(self.lobby_url, str) or not self.lobby_url.startswith(
            ("ws://", "wss://")
        ):
            raise ValueError(f"MeshConfig.lobby_url must be a ws:// or wss:// URL, got "
                             f"{self.lobby_url!r}")
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 64:
            raise ValueError("MeshConfig.name must be 1-64 characters")
        channels = tuple(self.channels)
        object.__setattr__(self, "channels", channels)
        if len(channels) < 2 or channels[0].name != "state" or channels[0].is_reliable \
                or channels[1].name != "events" or not channels[1].is_reliable:
            raise ValueError('MeshConfig.channels must start with an unreliable "state" channel '
                             'and a reliable "events" channel (see DEFAULT_CHANNELS)')
        if len(channels) > MAX_CHANNELS:
            raise ValueError(f"MeshConfig.channels: at most {MAX_CHANNELS} channels")
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"MeshConfig.channels: duplicate channel names in {names}")
        object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        if self.ice_transport_policy not in ("all", "relay"):
            raise ValueError('MeshConfig.ice_transport_policy must be "all" or "relay"')
        if self.ice_host_addresses is not None:
            if isinstance(self.ice_host_addresses, str):
                raise ValueError("MeshConfig.ice_host_addresses must be a tuple of addresses, "
                                 "not a single string")
            object.__setattr__(self, "ice_host_addresses", tuple(self.ice_host_addresses))
        for name in ("connect_timeout", "request_timeout", "disconnect_timeout",
                     "heartbeat_interval", "lobby_reconnect_delay", "lobby_ping_interval",
                     "send_rate_hz"):
            _positive(name, getattr(self, name))
        if self.heartbeat_interval >= self.disconnect_timeout:
            raise ValueError("MeshConfig.heartbeat_interval must be below disconnect_timeout")
        for name in ("state_size_warning", "max_message_size", "max_queued", "max_array_len",
                     "max_map_len", "max_containers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"MeshConfig.{name} must be a positive int, got {value!r}")
        if not 0 <= self.reconnect_attempts <= 100:
            raise ValueError("MeshConfig.reconnect_attempts must be 0-100")

    def host_candidate_plan(self) -> tuple[tuple[str, ...] | None, bool]:
        """Where ICE gathers host candidates: ``(addresses, added_to_defaults)``.

        ``(None, False)`` is aioice's own choice (every non-loopback interface); see
        :attr:`ice_host_addresses` for the rules.
        """
        if self.ice_host_addresses is not None:
            return self.ice_host_addresses, False
        if lobby_is_loopback(self.lobby_url):
            return ("127.0.0.1",), True
        return None, False

    def unpack_limits(self) -> UnpackLimits:
        """The msgpack limits for messages received from peers."""
        from ._unpack import UnpackLimits

        return UnpackLimits(self.max_message_size, self.max_array_len, self.max_map_len,
                            self.max_containers)

    def channel_index(self, name: str) -> int:
        """Index (lane id) of the channel called ``name``; ``KeyError`` if none."""
        for index, channel in enumerate(self.channels):
            if channel.name == name:
                return index
        raise KeyError(name)



def lobby_is_loopback(url: str) -> bool:
    """True when the lobby URL's host is this machine's loopback (``127.x``, ``::1``,
    ``localhost``)."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
