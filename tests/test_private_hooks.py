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


@pytest.mark.parametrize("name", ["_rto", "_data_channels"])
def test_sctp_tuned_fields_exist(name: str) -> None:
    # Plain or annotated assignment in __init__ (``self._x = ...`` / ``self._x: T = ...``).
    source = inspect.getsource(RTCSctpTransport.__init__)
    assert f"self.{name} = " in source or f"self.{name}: " in source


def test_sctp_hooked_methods_exist() -> None:
    # netplay._sctp.guard_streams wraps this on each transport instance.
    assert inspect.iscoroutinefunction(RTCSctpTransport._data_channel_receive)
    # the initial RTO is what the INIT timer waits
    assert "self._rto" in inspect.getsource(RTCSctpTransport._t1_start)


async def test_tune_lowers_the_initial_rto() -> None:
    from netplay import _sctp

    pc = RTCPeerConnection()
    try:
        pc.createDataChannel("x", negotiated=True, id=0)
        assert pc.sctp._rto == 3.0  # RFC 4960 RTO.Initial, aiortc's default
        assert _sctp.tune(pc.sctp)
        assert pc.sctp._rto == _sctp.INITIAL_RTO
    finally:
        await pc.close()


def test_tune_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from netplay import _sctp

    class Bare:
        pass

    _sctp._warned.clear()
    with caplog.at_level(logging.WARNING, logger="netplay"):
        assert not _sctp.tune(Bare())
        assert not _sctp.tune(Bare())
    warnings = [r for r in caplog.records if "falls back" in r.getMessage()]
    assert len(warnings) == 1
