"""Lobby settings: defaults, validation, environment variables and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from signaling.__main__ import build_parser, settings_from_args
from signaling.settings import Settings


def test_defaults() -> None:
    s = Settings()
    assert (s.host, s.port, s.max_message_bytes) == ("127.0.0.1", 8765, 64 * 1024)
    assert s.stun_urls == () and s.turn_urls == ()  # no ICE servers unless configured
    assert s.auth_secret is None and s.allowed_origins == ()
    assert 10 <= s.idle_timeout <= 60


@pytest.mark.parametrize("bad", [
    {"port": 70000}, {"log_level": "loud"}, {"ssl_certfile": "c.pem"}, {"rate": 0},
    {"burst": 0}, {"max_message_bytes": 0}, {"idle_timeout": -1}, {"resume_grace": -1},
    {"turn_urls": ("turn:x",)},
])
def test_invalid_settings(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid lobby settings"):
        Settings(**bad)


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]


def test_from_env() -> None:
    env = {
        "NETPLAY_LOBBY_PORT": "9000",
        "NETPLAY_LOBBY_RATE": "2.5",
        "NETPLAY_LOBBY_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "NETPLAY_LOBBY_AUTH_SECRET": "x",
        "NETPLAY_LOBBY_SSL_CERTFILE": "",  # empty means unset
        "UNRELATED": "1",
    }
    s = Settings.from_env(env)
    assert (s.port, s.rate, s.auth_secret, s.ssl_certfile) == (9000, 2.5, "x", None)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert Settings.from_env(env, port=9001, rate=None).port == 9001


def test_from_env_reports_the_variable() -> None:
    with pytest.raises(ValueError, match="NETPLAY_LOBBY_PORT"):
        Settings.from_env({"NETPLAY_LOBBY_PORT": "eighty"})


def test_cli_overrides_env() -> None:
    env = {"NETPLAY_LOBBY_PORT": "9000", "NETPLAY_LOBBY_HOST": "0.0.0.0"}
    s = settings_from_args(["--port", "9100", "--turn-urls", "turn:a,turns:b",
                            "--turn-secret", "t", "--idle-timeout", "5"], environ=env)
    assert (s.host, s.port, s.idle_timeout) == ("0.0.0.0", 9100, 5.0)
    assert s.turn_urls == ("turn:a", "turns:b")


def test_cli_has_an_option_for_every_setting() -> None:
    help_text = build_parser().format_help()
    for name in Settings.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text
        assert "NETPLAY_LOBBY_" + name.upper() in help_text


def test_cli_rejects_bad_values(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        settings_from_args(["--port", "x"], environ={})
    assert "NETPLAY_LOBBY_PORT" in capsys.readouterr().err


def test_python_dash_m_signaling_help() -> None:
    out = subprocess.run([sys.executable, "-m", "signaling", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "--auth-secret" in out and "--ssl-certfile" in out


def test_signaling_never_imports_aiortc() -> None:
    code = ("import sys, signaling.app, signaling.__main__; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('aiortc', 'aioice')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(base_url: str, **client_options: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url, **client_options) as http:
        async with asyncio.timeout(20):
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)


async def test_netplay_lobby_runs_from_env_and_logs_lobby_events(tmp_path: Any) -> None:
    port = free_port()
    log = (tmp_path / "lobby.log").open("w")
    env = {**os.environ, "NETPLAY_LOBBY_PORT": str(port), "NETPLAY_LOBBY_LOG_LEVEL": "info"}
    proc = subprocess.Popen([sys.executable, "-m", "signaling", "--max-lobbies", "3"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}")
        async with connect(f"ws://127.0.0.1:{port}/ws") as a, \
                connect(f"ws://127.0.0.1:{port}/ws") as b:
            for ws, name in ((a, "ann"), (b, "bob")):
                await ws.send(json.dumps({"type": "hello", "v": 1, "name": name}))
                assert json.loads(await ws.recv())["type"] == "welcome"
            await a.send(json.dumps({"type": "host", "game": "g"}))
            code = json.loads(await a.recv())["lobby"]["code"]
            await b.send(json.dumps({"type": "join", "code": code}))
            await b.recv()
            await b.send(json.dumps({"type": "leave", "id": 1}))
            await b.recv()
            await a.send(json.dumps({"type": "leave", "id": 1}))
            await a.recv()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    text = (tmp_path / "lobby.log").read_text()
    events = [line.split(" signaling: ", 1)[1] for line in text.splitlines()
              if " INFO signaling: " in line]
    patterns = [rf"lobby {code} created by \S+ \(g -, public, max 8 players\)",
                rf"\S+ \(ann\) joined lobby {code} \(1/8\)",
                rf"\S+ \(bob\) joined lobby {code} \(2/8\)",
                rf"\S+ \(bob\) left lobby {code}: left",
                rf"\S+ \(ann\) left lobby {code}: left",
                rf"lobby {code} closed"]
    assert len(events) == len(patterns), text
    for event, pattern in zip(events, patterns, strict=True):
        assert re.fullmatch(pattern, event), (event, pattern)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_gives_wss(tmp_path: Any) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    port = free_port()
    env = {**os.environ, "NETPLAY_LOBBY_SSL_CERTFILE": str(cert),
           "NETPLAY_LOBBY_SSL_KEYFILE": str(key)}
    proc = subprocess.Popen([sys.executable, "-m", "signaling", "--port", str(port),
                             "--log-level", "warning"], env=env)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        await wait_healthy(f"https://127.0.0.1:{port}", verify=context)
        async with connect(f"wss://127.0.0.1:{port}/ws", ssl=context) as ws:
            await ws.send(json.dumps({"type": "hello", "v": 1, "name": "tls", "id": 1}))
            assert json.loads(await ws.recv())["type"] == "welcome"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
