"""netplay: peer-to-peer multiplayer for Python games.

A tiny lobby server introduces the players; the game then talks to every other player over a
full WebRTC mesh (aiortc): unreliable state snapshots and reliable events.

```python
import netplay

config = netplay.MeshConfig(lobby_url="ws://127.0.0.1:8765/ws", name="alice")
async with netplay.Mesh(config) as mesh:
    info = await mesh.host(game="squares")
```

``Mesh`` and ``SyncMesh`` pull in aiortc, so they are imported lazily: ``import netplay.protocol``
(as the lobby server does) never imports aiortc.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._compiled import compiled_modules
from .config import DEFAULT_CHANNELS, ChannelConfig, IceServer, MeshConfig
from .errors import (
    ChannelClosed,
    ChannelError,
    LobbyDisconnected,
    LobbyRejected,
    LobbyUnavailable,
    MessageTooLarge,
    NetplayError,
    PeersNotConnected,
    ProtocolError,
    SignalingError,
    UnknownChannel,
)
from .events import (
    Event,
    HostChanged,
    LeaveReason,
    LobbyConnectionChanged,
    LobbyUpdated,
    MessageReceived,
    MessagesUndelivered,
    PeerJoined,
    PeerLeft,
)
from .protocol import LobbyInfo, LobbySummary, Member, PeerId
from .stats import CandidatePair, CandidateType, PeerStats

if TYPE_CHECKING:
    from .conditioner import ConditionerConfig
    from .mesh import Mesh
    from .sync import SyncMesh

__version__ = "0.1.0"

__all__ = [
    "CandidatePair",
    "CandidateType",
    "ChannelClosed",
    "ChannelConfig",
    "ChannelError",
    "ConditionerConfig",
    "DEFAULT_CHANNELS",
    "Event",
    "HostChanged",
    "IceServer",
    "LeaveReason",
    "LobbyConnectionChanged",
    "LobbyDisconnected",
    "LobbyInfo",
    "LobbyRejected",
    "LobbySummary",
    "LobbyUnavailable",
    "LobbyUpdated",
    "Member",
    "Mesh",
    "MeshConfig",
    "MessageReceived",
    "MessageTooLarge",
    "MessagesUndelivered",
    "NetplayError",
    "PeerId",
    "PeerJoined",
    "PeerLeft",
    "PeerStats",
    "PeersNotConnected",
    "ProtocolError",
    "SignalingError",
    "SyncMesh",
    "UnknownChannel",
    "compiled",
]

_LAZY = {
    "Mesh": "netplay.mesh",
    "SyncMesh": "netplay.sync",
    "ConditionerConfig": "netplay.conditioner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'netplay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())

_modules = compiled_modules()
compiled: bool = all(_modules.values())
"""Whether this netplay is the compiled build (``NETPLAY_COMPILE=1 pip install .``): its no-I/O
core (wire, delta, snapshots, interpolation, stats, clock, seq) compiled with mypyc. ``False``
for the pure-Python install, which behaves the same, more slowly."""
logging.getLogger(__name__).debug(
    "netplay %s: %s", __version__,
    "compiled build (mypyc)" if compiled else
    f"pure Python (compiled modules: {sorted(k for k, v in _modules.items() if v) or 'none'})")
del _modules
