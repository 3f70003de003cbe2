"""Shared fixtures: a real uvicorn lobby on 127.0.0.1 with an ephemeral port, run in a thread.

Modelled on httpx's ``tests/conftest.py`` (``serve_in_thread``) and matchbox's tests, which bind
port 0. The socket is bound before uvicorn starts, so the port is known without races.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from signaling.app import create_app
from signaling.settings import Settings


class LobbyServer:
    """A real lobby (Starlette app on uvicorn) serving in a background thread."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        self.settings = settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", ws_ping_interval=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name=f"lobby:{self.port}")

    @property
    def url(self) -> str:
        """WebSocket URL of the lobby endpoint."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LobbyServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("lobby server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@contextmanager
def run_lobby(port: int = 0, **overrides: Any) -> Iterator[LobbyServer]:
    """Start a lobby with ``Settings(**overrides)``; stop it on exit."""
    server = LobbyServer(Settings(**overrides), port=port).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lobby() -> Iterator[LobbyServer]:
    """One lobby server shared by the whole session (tests use fresh lobbies in it)."""
    with run_lobby() as server:
        yield server


@pytest.fixture
def lobby_factory() -> Iterator[Any]:
    """Start lobbies with custom settings (limits, auth); all are stopped after the test."""
    started: list[LobbyServer] = []

    def factory(port: int = 0, **overrides: Any) -> LobbyServer:
        server = LobbyServer(Settings(**overrides), port=port).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
