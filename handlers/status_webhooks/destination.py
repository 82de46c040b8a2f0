"""Which addresses a status webhook may reach.

Subscribers are configuration, but a URL is easily pointed (or re-pointed, through
DNS) at something inside the cluster: the API server, a database, the cloud's
metadata service. So the host is resolved once, every address it resolves to is
checked, and the connection goes to a checked address (see deliver.py), never to
whatever a second lookup would answer (DNS rebinding).
K8S_EE_STATUS_WEBHOOKS_ALLOW_PRIVATE=true lifts all of this, for receivers inside
the network (and for tests on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses to try, in order. Injectable so tests need no DNS.
Resolver = Callable[[str, int], Awaitable[list[Address]]]

# Names of metadata services, refused before any lookup (their resolvers answer inside the VM only).
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task credentials
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The destination is not allowed: retrying will not help. The message names host and address."""


class Unresolvable(Exception):
    """The host has no address right now (NXDOMAIN, a DNS timeout): worth retrying."""


async def system_resolver(host: str, port: int) -> list[Address]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Unresolvable(f"cannot resolve {host}: {exc.strerror}") from None
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    return found


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), which is what is reached."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address) -> str | None:
    """Why this address may not be reached ("a loopback address", ...), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = refusal(inner)
            return f"an IPv6 form of {inner}, {reason}" if reason else None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    # Order matters: Python counts 127/8 and 240/4 as "private" too; the first match says most.
    for reason, matched in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a carrier-grade NAT", isinstance(address, ipaddress.IPv4Address) and address in CGNAT),
        ("a reserved", address.is_reserved),
        ("a private", address.is_private),
        # Whatever else IANA lists as special-purpose (documentation, benchmarking, ...).
        ("a special-purpose", not address.is_global),
    ):
        if matched:
            return f"{reason} address"
    return None


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def checked_addresses(
    host: str, port: int, *, allow_private: bool, resolver: Resolver
) -> list[Address]:
    """Resolve `host` once and return its addresses, all of them allowed; raise Refused or Unresolvable."""
    name = host.lower().rstrip(".")
    if not allow_private and name in METADATA_HOSTS:
        raise Refused(f"{name} is a cloud metadata service")
    literal = literal_address(name)
    addresses = [literal] if literal is not None else await resolver(name, port)
    if not addresses:
        raise Unresolvable(f"{name} has no address")
    if allow_private:
        return addresses
    # Every address, not only the first: a name answering one public and one private
    # address would otherwise reach the private one whenever the public one fails.
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            shown = name if literal is not None else f"{name} resolves to {address}, which"
            raise Refused(f"{shown} is {reason} (K8S_EE_STATUS_WEBHOOKS_ALLOW_PRIVATE is off)")
    return addresses
