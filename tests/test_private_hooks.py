"""Canary for the private aiortc/aioice details netplay relies on (pinned in pyproject.toml).

If an upgrade renames one of them, netplay would silently lose a feature (loopback-only ICE,
the link conditioner, pacing of big reliable sends). This test names each one, so the upgrade
fails here instead.
"""

from __future__ import annotations

import inspect

import aioice.ice
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcsctptransport import RTCSctpTransport


def test_aioice_host_address_hook_exists() -> None:
    # netplay._ice replaces aioice.ice.get_host_addresses (looked up when gathering runs).
    assert callable(aioice.ice.get_host_addresses)
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)


def test_conditioner_hooks_exist() -> None:
    assert hasattr(RTCPeerConnection, "_RTCPeerConnection__createDtlsTransport")
    assert "self._send = " in inspect.getsource(RTCIceTransport)
    assert "self.transport._send(" in inspect.getsource(RTCDtlsTransport)
    assert callable(aioice.ice.Connection.data_received)
    assert "self.receiver.data_received(" in inspect.getsource(aioice.ice.StunProtocol)


@pytest.mark.parametrize("name", ["_cwnd", "_flight_size", "_outbound_queue",
                                  "_data_channel_queue"])
def test_sctp_pacing_fields_exist(name: str) -> None:
    # Plain or annotated assignment in __init__ (``self._x = ...`` / ``self._x: T = ...``).
    source = inspect.getsource(RTCSctpTransport.__init__)
    assert f"self.{name} = " in source or f"self.{name}: " in source


def test_sctp_sack_hook_exists() -> None:
    assert callable(RTCSctpTransport._receive_sack_chunk)
