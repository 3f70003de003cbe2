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


def in_flight_age(sctp: Any, stream_id: int, now: float) -> float:
    """Seconds (``now`` from ``time.time()``, aiortc's clock) since the oldest chunk of
    ``stream_id`` sent after the newest acknowledged chunk (of any stream) was sent, while it
    still awaits its acknowledgement; 0.0 when there is none, or when aiortc's private
    ``_sent_queue`` is unavailable.

    Unreliable data has no ``bufferedAmount`` once SCTP took it, and SCTP's window grows until
    a loss: on a slow link with a deep queue, state datagrams pile up in the network instead,
    and their age in flight shows it. Chunks older than an acknowledged one were probably
    lost (SCTP drops them after three SACKs report them missing), not queued: skipped.
    """
    oldest = None
    for chunk in getattr(sctp, "_sent_queue", ()):
        if chunk._acked:
            oldest = None  # what was sent before an acked chunk isn't queueing
        elif oldest is None and chunk.stream_id == stream_id and not chunk._abandoned:
            oldest = chunk._sent_time
    return 0.0 if oldest is None else max(0.0, now - oldest)
