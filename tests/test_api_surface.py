"""The public surface: exported names, lazy aiortc import, config validation."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import netplay
from netplay.config import MeshConfig


def test_all_is_sorted_complete_and_importable() -> None:
    assert netplay.__all__ == sorted(netplay.__all__)
    for name in netplay.__all__:
        assert getattr(netplay, name) is not None, name
    assert {"Mesh", "SyncMesh", "MeshConfig", "ChannelConfig", "PeerJoined", "PeerLeft",
            "HostChanged", "LobbyUpdated", "MessageReceived"} <= set(netplay.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        netplay.Nope  # noqa: B018


def test_importing_the_protocol_or_the_server_does_not_import_aiortc() -> None:
    code = ("import sys, netplay.protocol, netplay.config, netplay.events, signaling.app; "
            "assert 'aiortc' not in sys.modules, 'aiortc imported'; "
            "import netplay; netplay.Mesh; assert 'aiortc' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_events_and_config_are_frozen_dataclasses() -> None:
    for cls in (netplay.PeerJoined, netplay.PeerLeft, netplay.HostChanged, netplay.LobbyUpdated,
                netplay.MessageReceived, netplay.LobbyConnectionChanged, netplay.MeshConfig,
                netplay.ChannelConfig, netplay.IceServer):
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert dataclasses.is_dataclass(cls) and params.frozen, cls
    ev = netplay.PeerLeft("abc", "timed_out")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.reason = "left"  # type: ignore[misc]


def test_default_config() -> None:
    config = MeshConfig(lobby_url="ws://127.0.0.1:1/ws")
    assert config.ice_servers == () and config.ice_host_addresses is None
    assert [c.name for c in config.channels] == ["state", "events"]
    state, events = config.channels
    assert not state.ordered and state.max_retransmits == 0 and not state.is_reliable
    assert events.ordered and events.is_reliable
    assert config.disconnect_timeout == 2.5
    extra = MeshConfig(lobby_url="wss://x/ws", channels=(*netplay.DEFAULT_CHANNELS,
                                                        netplay.ChannelConfig.reliable("chat")))
    assert extra.channel_index("chat") == 2
    server = netplay.IceServer("turn:turn.example:3478", username="u", credential="p")
    assert server.urls == ("turn:turn.example:3478",)


@pytest.mark.parametrize("kwargs,match", [
    ({"lobby_url": "http://x"}, "ws:// or wss://"),
    ({"name": ""}, "1-64 characters"),
    ({"channels": (netplay.ChannelConfig.reliable("events"),)}, "must start with"),
    ({"channels": (netplay.ChannelConfig.reliable("state"),
                   netplay.ChannelConfig.reliable("events"))}, "must start with"),
    ({"channels": (*netplay.DEFAULT_CHANNELS, netplay.ChannelConfig.reliable("events"))},
     "duplicate"),
    ({"ice_transport_policy": "some"}, "all\" or \"relay"),
    ({"ice_host_addresses": "127.0.0.1"}, "not a single string"),
    ({"disconnect_timeout": 0}, "positive number"),
    ({"heartbeat_interval": 5.0}, "below disconnect_timeout"),
    ({"send_rate_hz": -1}, "positive number"),
    ({"max_queued": 0}, "positive int"),
    ({"reconnect_attempts": -1}, "0-100"),
])
def test_bad_config_raises_value_error_naming_the_field(kwargs: dict[str, object],
                                                        match: str) -> None:
    kwargs.setdefault("lobby_url", "ws://127.0.0.1:1/ws")
    with pytest.raises(ValueError, match=match):
        MeshConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_channel_and_ice_server_configs() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        netplay.ChannelConfig("")
    with pytest.raises(ValueError, match="not both"):
        netplay.ChannelConfig("x", max_retransmits=1, max_packet_life_time=5)
    with pytest.raises(ValueError, match="int >= 0"):
        netplay.ChannelConfig("x", max_retransmits=-1)
    with pytest.raises(ValueError, match="partial reliability is not supported"):
        netplay.ChannelConfig("x", ordered=False, max_retransmits=3)
    with pytest.raises(ValueError, match="arrival order"):  # was accepted, delivered unordered
        netplay.ChannelConfig("x", max_retransmits=0)
    assert not netplay.ChannelConfig("x", ordered=False, max_retransmits=0).is_reliable
    with pytest.raises(ValueError, match="priority"):
        netplay.ChannelConfig.reliable("x", priority=5000)
    with pytest.raises(ValueError, match="stun:/turn:"):
        netplay.IceServer(("http://stun.example",))


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(name: str) -> str:
    """The README's python block that starts with ``# example: NAME``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    found = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    assert len(found) == 1, f"README has {len(found)} examples named {name!r}"
    return found[0]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name,expected", [
    ("async facade", ["lobby code:", "True events {'type': 'chat', 'text': 'hi'}",
                      "{'x': 10, 'y': 20}", "bob left: left"]),
    ("game-loop facade", ["joined: dave", "dave got {'type': 'welcome'}", "dave is drawn at"]),
    ("state sync", ["frank's y moved smoothly: True", "rtt"]),
])
def test_readme_examples_run(lobby: Any, name: str, expected: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", readme_example(name)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "NETPLAY_LOBBY": lobby.url})
    assert result.returncode == 0, result.stderr
    for line in expected:
        assert line in result.stdout, result.stdout
