"""Finish closing an ``RTCPeerConnection`` that was still connecting (aiortc/aioice leak tasks).

``RTCPeerConnection.setRemoteDescription`` starts ``__connect()`` as a task nobody keeps. If
the connection is closed while aioice's ``Connection.connect()`` waits for its check list and
the checks already succeeded, ``connect()`` resumes after ``close()`` and starts the consent
freshness task (``query_consent``), which then runs for good on closed sockets: a mesh closed
in the middle of a connection attempt left two tasks running (seen over 40 s). So after
``pc.close()``, :func:`finish_close` cancels this connection's leftover ``__connect`` tasks
and any consent task, and waits for them. Reads private aiortc/aioice state (both pinned).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection

__all__ = ["finish_close"]


def _leftover_tasks(pc: RTCPeerConnection) -> list[asyncio.Task[Any]]:
    tasks = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (not task.done() and frame is not None
                and getattr(coro, "__qualname__", "").endswith("__connect")
                and frame.f_locals.get("self") is pc):
            tasks.append(task)
    sctp = pc.sctp
    connection = getattr(getattr(getattr(sctp, "transport", None), "transport", None),
                         "_connection", None)
    consent = getattr(connection, "_query_consent_task", None)
    if isinstance(consent, asyncio.Task) and not consent.done():
        tasks.append(consent)
    return tasks


async def finish_close(pc: RTCPeerConnection) -> None:
    """Cancel and await what a closed ``pc`` left running (see the module docstring)."""
    for _ in range(2):  # again: connect() may have started a consent task meanwhile
        tasks = _leftover_tasks(pc)
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
