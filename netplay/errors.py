"""The netplay exception tree.

```
NetplayError
├── SignalingError
│   ├── LobbyUnavailable     could not connect to the lobby, or the handshake was refused
│   ├── LobbyDisconnected    the lobby dropped us after we joined (the mesh keeps working)
│   └── LobbyRejected        the lobby answered a request with an error (``code`` says which)
├── ProtocolError            malformed lobby message or data-channel packet
├── PeersNotConnected        wait_for_peers timed out (also a TimeoutError); says why
└── ChannelError
    ├── UnknownChannel       no channel with that name was configured
    ├── ChannelClosed        send after the session was closed
    └── MessageTooLarge      a message over the size limit (also a ValueError)
```

A peer that fails or leaves is an event (``PeerLeft`` with a reason), never an exception.
Misuse of the API (wrong argument, reopening a closed session) raises ``ValueError`` or
``RuntimeError``.
"""

from __future__ import annotations

__all__ = [
    "ChannelClosed",
    "ChannelError",
    "LobbyDisconnected",
    "LobbyRejected",
    "LobbyUnavailable",
    "MessageTooLarge",
    "NetplayError",
    "PeersNotConnected",
    "ProtocolError",
    "SignalingError",
    "UnknownChannel",
]


class NetplayError(Exception):
    """Base class of every error netplay raises on purpose."""


class SignalingError(NetplayError):
    """Something went wrong between this game and the lobby server."""


class LobbyUnavailable(SignalingError):
    """The lobby server could not be reached, or it refused the handshake."""


class LobbyDisconnected(SignalingError):
    """The lobby connection was lost after joining. Peer connections keep working."""


class LobbyRejected(SignalingError):
    """The lobby answered a request with an error.

    ``code`` is the stable machine-readable error code from the lobby protocol
    (for example ``"lobby_full"`` or ``"bad_password"``); the message is the lobby's
    human-readable explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class PeersNotConnected(NetplayError, TimeoutError):
    """``wait_for_peers`` timed out with fewer peers connected than asked for.

    ``connected`` lists the peers that are; ``failures`` maps each peer that no link could be
    made to, to why (the ``PeerLeft.detail``, for example that a TURN server is needed).
    A ``TimeoutError``, so code that catches that keeps working.
    """

    def __init__(self, wanted: int, connected: list[str], failures: dict[str, str],
                 timeout: float | None) -> None:
        reasons = "".join(f"; peer {peer}: {why}" for peer, why in failures.items())
        super().__init__(f"{len(connected)} of {wanted} peer(s) connected after {timeout} s"
                         f"{reasons or '; no peer failed (still connecting, or too few joined)'}")
        self.wanted = wanted
        self.connected = connected
        self.failures = failures


class ProtocolError(NetplayError):
    """A lobby message or data-channel packet did not match the protocol."""


class ChannelError(NetplayError):
    """A problem with a data channel."""


class UnknownChannel(ChannelError, KeyError):
    """No channel with this name was configured for the session."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ChannelClosed(ChannelError):
    """A send was attempted after the session or channel was closed."""


class MessageTooLarge(ChannelError, ValueError):
    """A message is bigger than a send accepts: ``MeshConfig.max_message_size`` for reliable
    channels (which peers enforce too), one datagram for unreliable ones. Nothing was sent.

    ``size`` and ``limit`` are in bytes (the msgpack encoding).
    """

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit
