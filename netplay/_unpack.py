"""msgpack decoding with explicit limits, so a hostile packet can't allocate unbounded memory.

Left to its defaults, ``msgpack.unpackb`` derives its length limits from the buffer size: a
16 MiB reassembled message made of one array32 header and 16 Mi empty arrays (``0x90``) passes
them and builds 16 Mi Python lists, about 1 GiB. So every decode here passes explicit limits
(:class:`UnpackLimits`: array and map lengths, str/bin/ext lengths no longer than the payload),
and a payload bigger than :data:`SMALL` (only reassembled reliable messages are) is decoded
with hooks that count the arrays and maps built and stop at ``max_containers``. Containers are
the expensive part (64 bytes and more for one input byte: about 1 GiB for the payload above);
what remains (ints, floats, short strings) costs about 20 bytes per input byte at worst, so a
decode allocates at most a few tens of times ``max_size``, not without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["DEFAULT_LIMITS", "SMALL", "UnpackLimits", "unpack"]

SMALL = 65_536
"""Payloads up to this size (every state datagram and unreliable message) are decoded without
hooks: at most ``SMALL`` containers can be in them."""


class LimitExceeded(ValueError):
    """The payload is over one of the :class:`UnpackLimits`."""


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    """Limits for decoding one message body (from :class:`~netplay.MeshConfig`)."""

    max_size: int = 8 * 1024 * 1024
    """Largest payload (bytes)."""
    max_array_len: int = 1 << 20
    """Most elements in one array."""
    max_map_len: int = 1 << 18
    """Most entries in one map."""
    max_containers: int = 1 << 18
    """Most arrays and maps in one payload bigger than :data:`SMALL`."""


DEFAULT_LIMITS = UnpackLimits()


def unpack(payload: bytes | memoryview, limits: UnpackLimits = DEFAULT_LIMITS) -> Any:
    """Decode exactly one msgpack value within ``limits``.

    Raises :class:`LimitExceeded` or whatever msgpack raises on malformed input.
    """
    n = len(payload)
    if n > limits.max_size:
        raise LimitExceeded(f"{n} bytes is over the {limits.max_size}-byte limit")
    if n <= SMALL:
        return msgpack.unpackb(
            payload, raw=False, strict_map_key=False, use_list=True,
            max_str_len=n, max_bin_len=n, max_ext_len=n,
            max_array_len=min(n, limits.max_array_len), max_map_len=min(n, limits.max_map_len),
        )
    budget = limits.max_containers
    built = 0

    def count() -> None:
        nonlocal built
        built += 1
        if built > budget:
            raise LimitExceeded(f"more than {budget} arrays and maps (max_containers)")

    def list_hook(value: list[Any]) -> list[Any]:
        count()
        return value

    def pairs_hook(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        count()
        return dict(pairs)

    return msgpack.unpackb(
        payload, raw=False, strict_map_key=False, use_list=True,
        max_str_len=n, max_bin_len=n, max_ext_len=n,
        max_array_len=limits.max_array_len, max_map_len=limits.max_map_len,
        list_hook=list_hook, object_pairs_hook=pairs_hook,
    )
