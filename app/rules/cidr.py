"""IP allowlists: CIDR lists (IPv4 and IPv6) validated with clear messages, matched against a client IP.

An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports) is the IPv4
address it carries, both as a client and as a listed network (`::ffff:192.0.2.0/120`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ENTRIES = 200
_MAX_ENTRY_LENGTH = 64  # longer than any written CIDR


class CidrError(ValueError):
    """An allowlist entry cannot be used; the message names it and the fix."""


def _unmapped(network: Network) -> Network:
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def parse_network(entry: str) -> Network:
    """One CIDR (`10.0.0.0/8`, `2001:db8::/32`) or single address; host bits must be zero."""
    if not isinstance(entry, str) or not entry.strip() or len(entry) > _MAX_ENTRY_LENGTH:
        raise CidrError(
            f"{str(entry)[:_MAX_ENTRY_LENGTH]!r} is not a CIDR: write one like 203.0.113.0/24 or 2001:db8::/32"
        )
    text = entry.strip()
    if "%" in text:
        raise CidrError(f"{text!r} has an IPv6 zone (%...): write the network without it")
    try:
        return _unmapped(ipaddress.ip_network(text))
    except ValueError:
        pass
    try:
        wider = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise CidrError(f"{text!r} is not a CIDR: write one like 203.0.113.0/24 or 2001:db8::/32") from None
    raise CidrError(f"{text!r} has host bits set: did you mean {wider}?")


@dataclass(frozen=True)
class Allowlist:
    """A non-empty list of networks; no allowlist at all (None) is what allows every address."""

    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Validate every entry; raise CidrError naming the first bad one."""
        if isinstance(entries, str):
            raise CidrError("an allowlist is a list of CIDRs, not one string")
        networks: list[Network] = []
        for entry in entries:
            if len(networks) == MAX_ENTRIES:
                raise CidrError(f"an allowlist holds at most {MAX_ENTRIES} networks: merge some into wider ones")
            networks.append(parse_network(entry))
        if not networks:
            raise CidrError("an allowlist needs at least one network: remove it to allow every address")
        return cls(tuple(dict.fromkeys(networks)))

    def allows(self, client_ip: str) -> bool:
        """Whether `client_ip` falls in one of the networks; an unreadable address never does."""
        address = client_address(client_ip)
        return address is not None and any(address in network for network in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(network) for network in self.networks)


def client_address(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address (IPv4-mapped IPv6 unmapped), or None when it is not one address."""
    if not isinstance(client_ip, str) or len(client_ip) > _MAX_ENTRY_LENGTH:
        return None
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address
