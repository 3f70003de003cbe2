"""docs/api.md on its own: its recipes run as written, and it names every public thing.

A newcomer's first script came from api.md alone and failed silently, so the recipes are run
here exactly as the page shows them (extracted like the README's examples), in separate
processes, with nothing but the page's own code.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import netplay
from netplay.channels import Channel
from netplay.mesh import Mesh
from netplay.sync import SyncChannel, SyncMesh
from signaling.embedded import EmbeddedLobby

API = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def recipe(name: str) -> str:
    """The python block of docs/api.md that starts with ``# recipe: NAME``."""
    blocks = re.findall(r"```python\n(.*?)```", API.read_text(), re.S)
    found = [b for b in blocks if b.startswith(f"# recipe: {name}\n")]
    assert len(found) == 1, f"docs/api.md has {len(found)} recipes named {name!r}"
    return found[0]


def documented(name: str) -> bool:
    return f"`{name}" in API.read_text() or re.search(rf"`[^`]*\b{re.escape(name)}\b", API.read_text()) is not None


@pytest.mark.timeout(120)
def test_same_machine_recipe_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "same_machine.py"
    script.write_text(recipe("same machine"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=100, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bob got {'type': 'hello'} from True" in result.stdout, result.stdout


@pytest.mark.timeout(150)
def test_lan_recipe_host_and_guest_in_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "lan.py"
    script.write_text(recipe("LAN"))
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=tmp_path) as host:
        lines: list[str] = []
        got_command = threading.Event()

        def read() -> None:
            assert host.stdout is not None
            for line in host.stdout:
                lines.append(line)
                if line.startswith("join with: "):
                    got_command.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert got_command.wait(60), f"host printed no join command: {lines}"
            command = next(line for line in lines if line.startswith("join with: "))
            url, code = command.split()[-2:]
            assert re.fullmatch(r"ws://[0-9.]+:\d+/ws", url), url
            guest = subprocess.run([sys.executable, str(script), url, code],
                                   capture_output=True, text=True, timeout=100, cwd=tmp_path)
            assert guest.returncode == 0, guest.stderr
            assert "guest got: hello from the host" in guest.stdout, guest.stdout
            host.wait(timeout=60)
        finally:
            if host.poll() is None:
                host.kill()
        reader.join(timeout=10)
        errors = host.stderr.read() if host.stderr else ""
    assert host.returncode == 0, errors
    assert "host got: hello from a guest" in "".join(lines), lines


# --- completeness -------------------------------------------------------------------------------


def public_members(cls: type) -> list[str]:
    return [name for name, _ in inspect.getmembers(cls) if not name.startswith("_")]


def test_every_public_name_is_documented() -> None:
    missing = [name for name in netplay.__all__ if not documented(name)]
    assert missing == [], f"docs/api.md does not mention {missing}"


@pytest.mark.parametrize("cls", [Mesh, SyncMesh, Channel, SyncChannel, EmbeddedLobby,
                                 netplay.MeshConfig, netplay.ChannelConfig,
                                 netplay.ConditionerConfig])
def test_every_public_member_is_documented(cls: type) -> None:
    names = public_members(cls)
    if dataclasses.is_dataclass(cls):
        names += [f.name for f in dataclasses.fields(cls)]
    missing = sorted({name for name in names if not documented(name)})
    assert missing == [], f"docs/api.md does not mention {cls.__name__}.{missing}"


@pytest.mark.parametrize("cls", [netplay.PeerStats, netplay.PeerJoined, netplay.PeerLeft,
                                 netplay.HostChanged, netplay.LobbyUpdated,
                                 netplay.LobbyConnectionChanged, netplay.MessageReceived,
                                 netplay.MessagesUndelivered])
def test_every_field_is_documented(cls: Any) -> None:
    missing = [f.name for f in dataclasses.fields(cls) if not documented(f.name)]
    assert missing == [], f"docs/api.md does not mention {cls.__name__}.{missing}"


@pytest.mark.parametrize("cls", [netplay.LobbyInfo, netplay.Member, netplay.LobbySummary])
def test_every_lobby_record_field_is_documented(cls: Any) -> None:
    missing = [name for name in cls.model_fields if not documented(name)]
    assert missing == [], f"docs/api.md does not mention {cls.__name__}.{missing}"


def test_every_error_is_in_the_tree() -> None:
    tree = API.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    errors = [name for name in netplay.__all__
              if isinstance(getattr(netplay, name), type)
              and issubclass(getattr(netplay, name), netplay.NetplayError)]
    assert errors, "no error classes found"
    missing = [name for name in errors if name not in tree]
    assert missing == [], f"the Errors section lacks {missing}"


def test_documented_lobby_options_exist() -> None:
    """Every `--flag` of netplay-lobby that api.md names is a real option."""
    from signaling.__main__ import build_parser

    known = {opt for action in build_parser()._actions for opt in action.option_strings}
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", API.read_text()))
    turnserver_flags = {"--use-auth-secret", "--static-auth-secret", "--realm",
                        "--listening-port", "--fingerprint"}
    unknown = sorted(named - known - turnserver_flags)
    assert unknown == [], f"docs/api.md names lobby options that don't exist: {unknown}"


def test_recipes_use_no_ice_settings() -> None:
    """The point of the recipes: same machine and LAN need no ICE configuration."""
    for name in ("same machine", "LAN"):
        code = recipe(name)
        assert "ice_host_addresses" not in code and "ice_servers" not in code, name
    assert os.path.exists(API)
