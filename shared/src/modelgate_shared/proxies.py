"""Which peers may say who the client is: trusted proxy networks and the X-Forwarded-For walk.

The gateway (for rate-limit identities and the request log) and auth (for the login history)
answer the same question; one answer keeps them from disagreeing about who a client is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; ``ValueError`` naming the first entry that is neither."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    if not trusted:
        return False
    try:
        ip: IPv4Address | IPv6Address = ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def split_forwarded_for(values: Iterable[str]) -> list[str]:
    """Every X-Forwarded-For header value, as one chain, left (furthest) to right (nearest)."""
    return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]


def forwarded_client(peer: str, chain: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The client address: the peer, unless it is a trusted proxy, in which case the right-most
    X-Forwarded-For hop that is not itself a trusted proxy. None when that hop is not an IP
    address (garbage the proxy passed on): callers choose what to fall back to."""
    if not is_trusted(peer, trusted):
        return peer
    for hop in reversed(chain):
        if not is_trusted(hop, trusted):
            try:
                return str(ip_address(hop))
            except ValueError:
                return None
    return peer
