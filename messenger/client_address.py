"""Which address a request comes from: the peer, or ``X-Forwarded-For`` behind a trusted proxy.

Plain logic, no I/O. ``X-Forwarded-For`` is believed only when the peer is one of
``TRUSTED_PROXIES``; then the client is the right-most address in the header that is not itself
a trusted proxy (each proxy appends the address it received from, so entries to the left of the
first untrusted one could have been written by the client). Anything that does not parse as an
IP address stops the walk, and the last trusted hop is used instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of proxy addresses and networks; ``client(peer, xff)`` resolves the client."""

    def __init__(self, items: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in items
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client address of a request that reached us from ``peer``."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for raw in reversed(forwarded_for.split(",")):
            candidate = _normalise(raw)
            if candidate is None:
                break
            client = candidate
            if not self.trusts(candidate):
                break
        return client


def _normalise(raw: str) -> str | None:
    """One ``X-Forwarded-For`` entry as a canonical IP string, or None if it is not one."""
    text = raw.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
