"""Compatibility module: the lobby core moved to :mod:`signaling.backend` (the interface and
shared rules) and :mod:`signaling.memory` (the in-process backend); the Redis backend is
:mod:`signaling.redis_backend`. Everything that was importable from here still is.
"""

from __future__ import annotations

from .backend import (
    CODE_ALPHABET,
    CODE_LENGTH,
    HOST_GRACE,
    SUSPENDED_BUFFER,
    Backend,
    Deliver,
    LeaveReason,
    LobbyError,
    Session,
    check_metadata,
    check_name,
    normalize_code,
)
from .memory import MemoryBackend

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "HOST_GRACE",
    "SUSPENDED_BUFFER",
    "Backend",
    "Deliver",
    "LeaveReason",
    "LobbyError",
    "MemoryBackend",
    "Session",
    "check_metadata",
    "check_name",
    "normalize_code",
]
