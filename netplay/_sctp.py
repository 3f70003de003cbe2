"""Report SCTP data that aiortc would drop silently: data on a stream with no channel.

netplay creates every channel ``negotiated=True`` with a fixed id, so a peer sending on a
stream id we have no channel for (a peer configured with more channels than we are, or a
hostile one) is bad input. aiortc's ``RTCSctpTransport._data_channel_receive`` drops such
data without a trace, and it *creates* a channel when a peer sends an in-band DCEP open
(netplay never does; a peer could create channels in us at will). :func:`guard_streams`
wraps that private method on one transport instance (aiortc is pinned), drops both cases,
and reports them to ``on_bad(stream_id, why)`` so they are counted like other bad packets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["guard_streams"]

WEBRTC_DCEP = 50
"""SCTP payload protocol id of the data channel establishment protocol (RFC 8832)."""
DATA_CHANNEL_OPEN = 3


async def _dropped() -> None:
    """What aiortc awaits for a message the guard dropped."""


def guard_streams(sctp: Any, on_bad: Callable[[int, str], None]) -> bool:
    """Wrap ``sctp._data_channel_receive`` so that data for an unknown stream id and in-band
    channel opens are dropped and reported; False when aiortc lacks the private method."""
    original = getattr(sctp, "_data_channel_receive", None)
    channels = getattr(sctp, "_data_channels", None)
    if original is None or not isinstance(channels, dict):
        return False
    if getattr(original, "_netplay", False):
        return True

    # A plain function handing back aiortc's own coroutine (aiortc awaits the result), so the
    # hot path of every received message gains a few checks but no extra coroutine.
    def receive(stream_id: int, pp_id: int, data: bytes) -> Awaitable[None]:
        if pp_id == WEBRTC_DCEP:
            if data and data[0] == DATA_CHANNEL_OPEN:
                on_bad(stream_id, "in-band channel open (netplay negotiates its channels)")
                return _dropped()
            if stream_id not in channels:
                on_bad(stream_id, f"channel control message for unknown channel id {stream_id}")
                return _dropped()
        elif stream_id not in channels:
            on_bad(stream_id, f"data on unknown channel id {stream_id} ({len(data)} bytes; "
                              f"is the peer configured with more channels?)")
            return _dropped()
        return original(stream_id, pp_id, data)  # type: ignore[no-any-return]

    receive._netplay = True  # type: ignore[attr-defined]
    sctp._data_channel_receive = receive
    return True
