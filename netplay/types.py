"""Type aliases shared by netplay's modules (no I/O, no aiortc)."""

from __future__ import annotations

from typing import Any, TypeAlias

from .protocol import PeerId

__all__ = ["Jsonish", "PeerId", "Received"]

Jsonish: TypeAlias = Any
"""Any msgpack-serialisable value: None, bool, int, float, str, bytes, lists and dicts of them."""

Received: TypeAlias = tuple[PeerId, Any]
"""One received message: ``(peer_id, body)``."""
