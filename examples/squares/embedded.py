"""An in-process lobby for when the player gives no ``--lobby URL``.

The lobby (``signaling.app``) runs on uvicorn in a daemon thread on a socket pre-bound to
127.0.0.1 with an ephemeral port, so the URL is known before the server starts and no port can
clash (the pattern of ``tests/conftest.py``). Other processes on this machine (the ``--bots``)
join it by URL.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

__all__ = ["EmbeddedLobby"]

logger = logging.getLogger(__name__)

RESUME_GRACE = 3.0
"""Seconds the lobby keeps a dropped player's seat (the server default is longer)."""


class EmbeddedLobby:
    """A real lobby server serving in a background thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from signaling.app import create_app
        from signaling.settings import Settings

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        # A short resume grace: a crashed host is replaced after seconds, which the demo shows.
        config = uvicorn.Config(create_app(Settings(resume_grace=RESUME_GRACE)),
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name=f"embedded-lobby:{self.port}")

    @property
    def url(self) -> str:
        """WebSocket URL of the lobby."""
        return f"ws://{self.host}:{self.port}/ws"

    def start(self, timeout: float = 10.0) -> EmbeddedLobby:
        """Start serving; returns once uvicorn accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded lobby did not start")
            time.sleep(0.01)
        logger.info("embedded lobby at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop the server and release its port."""
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> EmbeddedLobby:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
