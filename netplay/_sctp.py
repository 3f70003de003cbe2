"""Every hook netplay sets into aiortc's SCTP transport (private attributes; aiortc is pinned).

1. :func:`guard_streams`: report SCTP data that aiortc would drop silently.
2. :func:`tune`: the initial RTO (``_rto``, RFC 4960's RTO.Initial of 3 s) is lowered so
   that a lost INIT or COOKIE under heavy loss costs well under a second of set-up.
   (Keeping SCTP's congestion window at netplay's own window was tried: SCTP halves it for
   every random loss, which caps throughput at 5% loss near 60 KB/s; but with the window
   held up, aiortc's association stalled for seconds under 10% loss, so SCTP's window stays
   as aiortc runs it.)
Each returns False and logs one WARNING when the private attribute it needs is missing (then
aiortc's defaults apply).

Stream guard:

netplay creates every channel ``negotiated=True`` with a fixed id, so a peer sending on a
stream id we have no channel for (a peer configured with more channels than we are, or a
hostile one) is bad input. aiortc's ``RTCSctpTransport._data_channel_receive`` drops such
data without a trace, and it *creates* a channel when a peer sends an in-band DCEP open
(netplay never does; a peer could create channels in us at will). :func:`guard_streams`
wraps that private method on one transport instance (aiortc is pinned), drops both cases,
and reports them to ``on_bad(stream_id, why)`` so they are counted like other bad packets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["guard_streams", "tune"]

logger = logging.getLogger(__name__)
_warned: set[str] = set()

INITIAL_RTO = 0.5
"""Seconds: SCTP's first retransmission timeout during association set-up (aiortc: 3 s)."""

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


def _fallback(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        logger.warning("aiortc's SCTP transport has no %s (aiortc changed?): netplay falls back "
                       "to aiortc's defaults", what)


def tune(sctp: Any) -> bool:
    """Lower the initial RTO of ``sctp`` (see the module docstring). False (and one WARNING
    per process) when aiortc lacks the field."""
    if not hasattr(sctp, "_rto"):
        _fallback("_rto field")
        return False
    sctp._rto = min(sctp._rto, INITIAL_RTO)
    return True
