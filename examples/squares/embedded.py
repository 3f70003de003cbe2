"""The in-process lobby the demo starts when the player gives no ``--lobby URL``.

It is netplay's :class:`signaling.embedded.EmbeddedLobby` (uvicorn in a daemon thread, 127.0.0.1,
a free port) with a short resume grace, so a crashed host is replaced within seconds and the
demo shows host migration. Other processes on this machine (the ``--bots``) join it by URL.
"""

from __future__ import annotations

from signaling.embedded import EmbeddedLobby as _Lobby
from signaling.settings import Settings

__all__ = ["RESUME_GRACE", "EmbeddedLobby"]

RESUME_GRACE = 3.0
"""Seconds the lobby keeps a dropped player's seat (the server default is longer)."""


class EmbeddedLobby(_Lobby):
    """The demo's lobby: server defaults except a short resume grace."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(Settings(resume_grace=RESUME_GRACE), host=host, port=port)
