"""Restrict the host addresses aioice gathers ICE candidates on.

aioice's ``get_host_addresses`` lists every interface address except ``127.0.0.1`` and ``::1``
(aioice ``ice.py``; RFC 8445 says loopback candidates should not be offered). That is right on
the internet, but it means two peers on one machine talk over the machine's LAN addresses, and
there is no aiortc setting to choose interfaces. Games want that choice too: LAN-only play, or
keeping candidates off VPN and container interfaces.

``Connection.gather_candidates`` looks ``get_host_addresses`` up in the ``aioice.ice`` module each
time it runs, so we replace that module attribute once with a wrapper that consults a context
variable. :func:`host_addresses` sets the variable around ``setLocalDescription`` (gathering
happens inside it, in tasks that copy the caller's context), so the setting is per peer
connection and never leaks into other aiortc users in the process. This relies on a private
aioice detail, which is why ``pyproject.toml`` pins aioice's minor version.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice
import ifaddr

__all__ = ["host_addresses", "resolve_host_addresses"]

logger = logging.getLogger(__name__)

_allowed: ContextVar[tuple[str, ...] | None] = ContextVar("netplay_ice_hosts", default=None)
_original = aioice.ice.get_host_addresses


def resolve_host_addresses(entries: Sequence[str]) -> tuple[str, ...]:
    """Turn IP addresses and interface names (``"eth0"``, ``"lo"``) into IP addresses.

    Raises ``ValueError`` for an entry that is neither an IP address nor a known interface.
    """
    resolved: list[str] = []
    adapters = None
    for entry in entries:
        try:
            resolved.append(str(ipaddress.ip_address(entry)))
            continue
        except ValueError:
            pass
        if adapters is None:
            adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
            adapters.update({a.name: a for a in adapters.values()})
        adapter = adapters.get(entry)
        if adapter is None:
            raise ValueError(
                f"ice host address {entry!r} is neither an IP address nor a network interface "
                f"(interfaces here: {', '.join(sorted(adapters))})"
            )
        for ip in adapter.ips:
            resolved.append(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return tuple(dict.fromkeys(resolved))


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    allowed = _allowed.get()
    if allowed is None:
        return _original(use_ipv4, use_ipv6)
    out = []
    for address in allowed:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def _install() -> None:
    current = getattr(aioice.ice, "get_host_addresses", None)
    if current is None:
        raise ImportError(
            "this aioice version has no ice.get_host_addresses; netplay needs the aioice "
            "version pinned in its pyproject.toml"
        )
    if current is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


@contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this block, ICE gathers host candidates only on ``addresses``.

    ``None`` keeps aioice's default (every non-loopback interface). Entries may be IP addresses
    or interface names.
    """
    if addresses is None:
        yield
        return
    token = _allowed.set(resolve_host_addresses(addresses))
    try:
        yield
    finally:
        _allowed.reset(token)


_install()
