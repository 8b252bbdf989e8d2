"""Rules for the IP addresses a merchant URL may point at.

Only globally routable unicast addresses are allowed. The rules stop server-side
request forgery: a tenant must not be able to make the platform call its own
infrastructure (loopback, the private networks, the cloud metadata service at
169.254.169.254) by saving a webhook URL that points there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Forbidden IPv4 ranges and the reason each is reported with. Sources: the IANA
# IPv4 Special-Purpose Address Registry and RFC 1918, 6598, 5737, 2544, 5771, 1112.
_IPV4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(cidr), reason)
    for cidr, reason in (
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)

# Forbidden IPv6 ranges (IANA IPv6 Special-Purpose Address Registry). Ranges that
# embed an IPv4 address are not listed: they are judged by that address instead.
_IPV6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(cidr), reason)
    for cidr, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

# Global unicast space; every IPv6 address outside it is unassigned or special.
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address carried inside an IPv6 address, if it carries one.

    Covers IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
    (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::/48). Each of these can route to
    the embedded IPv4 host, so that host decides whether the address is allowed.
    """
    if address in _IPV4_MAPPED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None


def _ipv6_blocked_reason(address: ipaddress.IPv6Address) -> str | None:
    for network, reason in _IPV6_BLOCKED:
        if address in network:
            return reason
    if address not in _IPV6_GLOBAL_UNICAST:
        return "reserved"
    return None


def _ipv4_blocked_reason(address: ipaddress.IPv4Address) -> str | None:
    for network, reason in _IPV4_BLOCKED:
        if address in network:
            return reason
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """The address rule plus the operator's development exemptions.

    `exempt_networks` comes from VIZOCHOK_ALLOW_PRIVATE_NETWORKS and is empty in
    production. An exempt network lifts the rule only for addresses inside it.
    """

    exempt_networks: tuple[IPNetwork, ...] = ()

    def blocked_reason(self, address: IPAddress) -> str | None:
        """Return why `address` is forbidden, or None when it may be called."""
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            return "scoped (zone id)"
        if self._is_exempt(address):
            return None

        if isinstance(address, ipaddress.IPv4Address):
            return _ipv4_blocked_reason(address)

        inner = embedded_ipv4(address)
        if inner is not None:
            if self._is_exempt(inner):
                return None
            reason = _ipv4_blocked_reason(inner)
            return None if reason is None else f"{reason}, embedded in IPv6"
        return _ipv6_blocked_reason(address)

    def first_blocked(
        self, addresses: Iterable[IPAddress]
    ) -> tuple[IPAddress, str] | None:
        """Return the first forbidden address with its reason, or None if all pass."""
        for address in addresses:
            reason = self.blocked_reason(address)
            if reason is not None:
                return address, reason
        return None

    def _is_exempt(self, address: IPAddress) -> bool:
        return any(
            address.version == network.version and address in network
            for network in self.exempt_networks
        )


def parse_numeric_host(host: str) -> IPAddress | None:
    """Return the address a numeric host spelling denotes, or None for a name.

    Besides dotted quads and IPv6 literals this accepts the forms that C resolvers
    (inet_aton) accept and that would otherwise slip past a dotted-quad check:
    `2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1` all denote 127.0.0.1.
    """
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in candidate:
        try:
            return ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
    return _parse_inet_aton(candidate)


def _parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_parse_inet_aton_part(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values = [number for number in numbers if number is not None]

    # The last part fills every byte the earlier parts left: "127.1" is 127.0.0.1.
    *leading, last = values
    if any(value > 0xFF for value in leading):
        return None
    if last >= 1 << (8 * (4 - len(leading))):
        return None
    result = last
    for index, value in enumerate(leading):
        result |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(result)


_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def _parse_inet_aton_part(part: str) -> int | None:
    if not _INET_ATON_PART.fullmatch(part):
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:], 16)
    if part.startswith("0"):
        return int(part, 8)
    return int(part, 10)
