"""Run a lobby inside another program: a game offering LAN play, the demo, the test suite.

The lobby (:func:`signaling.app.create_app`) serves on uvicorn in a daemon thread, on a socket
bound before uvicorn starts (port 0 picks a free port), so the URL is known at once and no port
can clash. The pattern is httpx's test server (``serve_in_thread``).

```python
from signaling.embedded import EmbeddedLobby

with EmbeddedLobby() as lobby:          # 127.0.0.1, a free port
    config = netplay.MeshConfig(lobby_url=lobby.url, name="alice")
```
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from .app import create_app
from .direct import uvicorn_ws
from .settings import Settings

__all__ = ["EmbeddedLobby"]

logger = logging.getLogger(__name__)


class EmbeddedLobby:
    """A real lobby server serving in a background thread of this process.

    ``settings`` defaults to ``Settings()`` (the server defaults, not the environment);
    ``host``/``port`` choose the listening address (port 0: a free one).
    """

    def __init__(self, settings: Settings | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.settings = settings if settings is not None else Settings()
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on",
                                ws_ping_interval=None, ws_max_size=self.settings.ws_max_size,
                                ws_per_message_deflate=False, ws=uvicorn_ws(self.settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name=f"lobby:{self.port}")

    @property
    def url(self) -> str:
        """WebSocket URL of the lobby endpoint (what ``MeshConfig.lobby_url`` wants)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP endpoints (``/healthz``, ``/lobbies``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedLobby:
        """Start serving; returns once uvicorn accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the lobby on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        logger.info("lobby serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop the server and release its port. Idempotent."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> EmbeddedLobby:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
