"""Tests for the address rule: which IP addresses a merchant URL may point at."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.addresses import AddressPolicy, parse_numeric_host

DEFAULT_POLICY = AddressPolicy()
LOOPBACK_EXEMPT_POLICY = AddressPolicy(exempt_networks=(ip_network("127.0.0.0/8"),))

# The forbidden IPv4 ranges, written from the URL policy of the webhook contract
# ("globally routable" only) and the IANA IPv4 Special-Purpose Address Registry.
# This table is the oracle for the property tests, so it must not be imported from
# the module under test.
FORBIDDEN_IPV4_CIDRS = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # RFC 1918 private
    "100.64.0.0/10",  # RFC 6598 shared address space (CGNAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, includes the metadata service 169.254.169.254
    "172.16.0.0/12",  # RFC 1918 private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation TEST-NET-1
    "192.88.99.0/24",  # deprecated 6to4 relay anycast (RFC 7526), reserved
    "192.168.0.0/16",  # RFC 1918 private
    "198.18.0.0/15",  # benchmarking (RFC 2544)
    "198.51.100.0/24",  # documentation TEST-NET-2
    "203.0.113.0/24",  # documentation TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved
    "255.255.255.255/32",  # limited broadcast
)
FORBIDDEN_IPV4_NETWORKS = tuple(
    ipaddress.IPv4Network(cidr) for cidr in FORBIDDEN_IPV4_CIDRS
)

# Forbidden ranges inside the IPv6 global unicast block 2000::/3, apart from 6to4
# (2002::/16), which is judged by its embedded IPv4 address. Everything outside
# 2000::/3 is forbidden as well.
IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
FORBIDDEN_IPV6_GLOBAL_CIDRS = (
    "2001::/23",  # IETF protocol assignments (Teredo, benchmarking 2001:2::/48)
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
)
FORBIDDEN_IPV6_GLOBAL_NETWORKS = tuple(
    ipaddress.IPv6Network(cidr) for cidr in FORBIDDEN_IPV6_GLOBAL_CIDRS
)
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def is_forbidden_ipv4(address: IPv4Address) -> bool:
    """Return whether the contract forbids `address`, from the table above."""
    return any(address in network for network in FORBIDDEN_IPV4_NETWORKS)


def mapped_form(address: IPv4Address) -> IPv6Address:
    """Return the IPv4-mapped IPv6 address ::ffff:a.b.c.d."""
    return IPv6Address((0xFFFF << 32) | int(address))


def compatible_form(address: IPv4Address) -> IPv6Address:
    """Return the IPv4-compatible IPv6 address ::a.b.c.d."""
    return IPv6Address(int(address))


def nat64_form(address: IPv4Address) -> IPv6Address:
    """Return the NAT64 well-known-prefix address 64:ff9b::a.b.c.d."""
    return IPv6Address((0x0064_FF9B << 96) | int(address))


def six_to_four_form(address: IPv4Address, suffix: int = 0) -> IPv6Address:
    """Return the 6to4 address 2002:aabb:ccdd::/48 with `suffix` in the low 80 bits."""
    return IPv6Address((0x2002 << 112) | (int(address) << 80) | suffix)


# --- IPv4 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",  # noqa: S104 - an address under test, not a bind address
        "0.255.255.255",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.0.1",
        "169.254.169.254",
        "192.0.0.1",
        "192.0.0.255",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "198.19.255.255",
        "224.0.0.1",
        "239.255.255.255",
        "240.0.0.1",
        "254.255.255.255",
        "255.255.255.255",
    ],
)
def test_blocked_reason_rejects_forbidden_ipv4(address: str) -> None:
    """Every special-purpose IPv4 range the contract lists is forbidden."""
    assert DEFAULT_POLICY.blocked_reason(IPv4Address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "9.255.255.255",  # just below 10.0.0.0/8
        "11.0.0.0",  # just above 10.0.0.0/8
        "100.63.255.255",  # just below CGNAT
        "100.128.0.0",  # just above CGNAT
        "172.15.255.255",  # just below 172.16.0.0/12
        "172.32.0.0",  # just above 172.16.0.0/12
        "198.17.255.255",  # just below benchmarking
        "198.20.0.0",  # just above benchmarking
        "223.255.255.255",  # just below multicast
    ],
)
def test_blocked_reason_allows_public_ipv4(address: str) -> None:
    """Globally routable IPv4 addresses, including range neighbours, are allowed."""
    assert DEFAULT_POLICY.blocked_reason(IPv4Address(address)) is None


@pytest.mark.parametrize("cidr", FORBIDDEN_IPV4_CIDRS)
def test_blocked_reason_ipv4_range_edges(cidr: str) -> None:
    """The first and last address of each forbidden IPv4 range are forbidden."""
    network = ipaddress.IPv4Network(cidr)
    assert DEFAULT_POLICY.blocked_reason(network.network_address) is not None
    assert DEFAULT_POLICY.blocked_reason(network.broadcast_address) is not None


# --- IPv6 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "::",  # unspecified
        "::1",  # loopback
        "fc00::1",  # unique local
        "fd12:3456:789a::1",  # unique local
        "fe80::1",  # link-local
        "febf:ffff::1",  # link-local, last /10 block
        "fec0::1",  # site-local (deprecated)
        "ff02::1",  # multicast
        "ff0e::1",  # multicast, global scope
        "2001:db8::1",  # documentation
        "2001:db8:ffff:ffff::1",  # documentation
        "3fff::1",  # documentation (RFC 9637)
        "3fff:fff::1",  # documentation, last address block of 3fff::/20
        "100::1",  # discard-only
        "64:ff9b:1::1",  # local-use NAT64
        "2001::1",  # Teredo, inside IETF protocol assignments 2001::/23
        "2001:2::1",  # benchmarking
        "4000::1",  # outside 2000::/3
        "1fff:ffff::1",  # outside 2000::/3
        "5f00::1",  # segment routing, outside 2000::/3
        "e000::1",  # outside 2000::/3
    ],
)
def test_blocked_reason_rejects_forbidden_ipv6(address: str) -> None:
    """Special-purpose IPv6 ranges and anything outside 2000::/3 are forbidden."""
    assert DEFAULT_POLICY.blocked_reason(IPv6Address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "2606:4700::1111",
        "2001:4860:4860::8888",  # 2001:4860::/32 lies outside 2001::/23
        "2a00:1450:4001::1",
        "3ffe::1",  # below 3fff::/20
    ],
)
def test_blocked_reason_allows_public_ipv6(address: str) -> None:
    """Global unicast IPv6 addresses outside the special ranges are allowed."""
    assert DEFAULT_POLICY.blocked_reason(IPv6Address(address)) is None


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101:1::1",  # 6to4 of 192.168.1.1, with subnet and host bits
    ],
)
def test_blocked_reason_rejects_embedded_private_ipv4(address: str) -> None:
    """An IPv6 address embedding a forbidden IPv4 address is forbidden."""
    assert DEFAULT_POLICY.blocked_reason(IPv6Address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::808:808",
        "2002:0808:0808::",
        "2002:0808:0808:1::1",
    ],
)
def test_blocked_reason_allows_embedded_public_ipv4(address: str) -> None:
    """An IPv6 address embedding a public IPv4 address is judged by that address."""
    assert DEFAULT_POLICY.blocked_reason(IPv6Address(address)) is None


@pytest.mark.parametrize(
    "address",
    ["fe80::1%eth0", "2606:4700::1111%eth0", "::ffff:8.8.8.8%1"],
)
def test_blocked_reason_rejects_zone_id(address: str) -> None:
    """An IPv6 address with a zone id is forbidden even when the address is public."""
    assert DEFAULT_POLICY.blocked_reason(IPv6Address(address)) is not None


# --- Exemptions -----------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.5", "::ffff:127.0.0.1"])
def test_blocked_reason_exempt_network_allowed(address: str) -> None:
    """An exempt 127.0.0.0/8 allows its addresses, also in IPv4-mapped form."""
    assert LOOPBACK_EXEMPT_POLICY.blocked_reason(ip_address(address)) is None


@pytest.mark.parametrize("address", ["10.0.0.1", "::1", "169.254.169.254"])
def test_blocked_reason_exemption_is_narrow(address: str) -> None:
    """An exempt 127.0.0.0/8 still forbids addresses outside it, IPv6 ::1 included."""
    assert LOOPBACK_EXEMPT_POLICY.blocked_reason(ip_address(address)) is not None


def test_first_blocked_finds_any_blocked() -> None:
    """first_blocked reports a forbidden address even after allowed ones."""
    addresses = [IPv4Address("8.8.8.8"), IPv4Address("10.0.0.1")]
    found = DEFAULT_POLICY.first_blocked(addresses)
    assert found is not None
    assert found[0] == IPv4Address("10.0.0.1")


def test_first_blocked_all_public() -> None:
    """first_blocked returns None when every address is allowed."""
    addresses: list[IPv4Address | IPv6Address] = [
        IPv4Address("8.8.8.8"),
        IPv6Address("2606:4700::1111"),
    ]
    assert DEFAULT_POLICY.first_blocked(addresses) is None


# --- Numeric host spellings -----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0", "0.0.0.0"),  # noqa: S104 - an address under test, not a bind address
        ("4294967295", "255.255.255.255"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ],
)
def test_parse_numeric_host_spellings(host: str, expected: str) -> None:
    """Numeric spellings that C resolvers accept denote the address they spell."""
    assert parse_numeric_host(host) == ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.256",
        "1.2.65536",
        "4294967296",
        "1_0.0.0.1",
        "08.0.0.1",  # 8 is not an octal digit
        "0x",
        "0x1g",
        "1..1",
        "127.0.0.1.",
        "-1",
        "+1",
        "١٢٧.0.0.1",  # Arabic-Indic digits
        "",
        "[::1",
        "::g",
    ],
)
def test_parse_numeric_host_rejects_non_numeric(host: str) -> None:
    """Names and malformed numbers are not numeric hosts."""
    assert parse_numeric_host(host) is None


# --- Properties -----------------------------------------------------------------


@given(st.ip_addresses(v=4))
def test_blocked_reason_ipv4_matches_contract(address: IPv4Address) -> None:
    """An IPv4 address is allowed exactly when it lies outside every forbidden range."""
    allowed = DEFAULT_POLICY.blocked_reason(address) is None
    assert allowed == (not is_forbidden_ipv4(address))


@given(
    st.sampled_from(FORBIDDEN_IPV4_NETWORKS).flatmap(
        lambda network: st.integers(-1, network.num_addresses).map(
            lambda offset: IPv4Address(
                (int(network.network_address) + offset) % (1 << 32)
            )
        )
    )
)
def test_blocked_reason_ipv4_near_ranges(address: IPv4Address) -> None:
    """Addresses in and just beside each forbidden range match the contract."""
    allowed = DEFAULT_POLICY.blocked_reason(address) is None
    assert allowed == (not is_forbidden_ipv4(address))


@given(
    st.integers(
        int(IPV6_GLOBAL_UNICAST.network_address),
        int(IPV6_GLOBAL_UNICAST.broadcast_address),
    ).map(IPv6Address)
)
def test_blocked_reason_ipv6_global_unicast(address: IPv6Address) -> None:
    """Inside 2000::/3 only the listed ranges and 6to4 of forbidden IPv4 are blocked."""
    if address in SIX_TO_FOUR:
        forbidden = is_forbidden_ipv4(IPv4Address((int(address) >> 80) & 0xFFFFFFFF))
    else:
        forbidden = any(
            address in network for network in FORBIDDEN_IPV6_GLOBAL_NETWORKS
        )
    allowed = DEFAULT_POLICY.blocked_reason(address) is None
    assert allowed == (not forbidden)


@given(st.ip_addresses(v=6).filter(lambda address: address not in IPV6_GLOBAL_UNICAST))
def test_blocked_reason_ipv6_outside_global_unicast(address: IPv6Address) -> None:
    """Outside 2000::/3 only addresses embedding a public IPv4 address are allowed."""
    embedding_networks = ("::ffff:0:0/96", "::/96", "64:ff9b::/96")
    embeds_ipv4 = any(address in ip_network(cidr) for cidr in embedding_networks)
    inner = IPv4Address(int(address) & 0xFFFFFFFF)
    # :: and ::1 sit inside ::/96 but are IPv6's own unspecified and loopback.
    may_be_allowed = embeds_ipv4 and int(address) > 1 and not is_forbidden_ipv4(inner)
    allowed = DEFAULT_POLICY.blocked_reason(address) is None
    assert allowed == may_be_allowed


@given(st.ip_addresses(v=4))
def test_blocked_reason_mapped_matches_ipv4(address: IPv4Address) -> None:
    """The IPv4-mapped form of an address is allowed exactly when the address is."""
    expected = DEFAULT_POLICY.blocked_reason(address) is None
    assert (DEFAULT_POLICY.blocked_reason(mapped_form(address)) is None) == expected


@given(st.ip_addresses(v=4))
def test_blocked_reason_compatible_matches_ipv4(address: IPv4Address) -> None:
    """The IPv4-compatible form of an address is allowed exactly when the address is."""
    expected = DEFAULT_POLICY.blocked_reason(address) is None
    actual = DEFAULT_POLICY.blocked_reason(compatible_form(address)) is None
    assert actual == expected


@given(st.ip_addresses(v=4))
def test_blocked_reason_nat64_matches_ipv4(address: IPv4Address) -> None:
    """The NAT64 form of an address is allowed exactly when the address is."""
    expected = DEFAULT_POLICY.blocked_reason(address) is None
    assert (DEFAULT_POLICY.blocked_reason(nat64_form(address)) is None) == expected


@given(st.ip_addresses(v=4), st.integers(0, (1 << 80) - 1))
def test_blocked_reason_six_to_four_matches_ipv4(
    address: IPv4Address, suffix: int
) -> None:
    """A 6to4 address, whatever its subnet and host bits, is judged by its IPv4."""
    expected = DEFAULT_POLICY.blocked_reason(address) is None
    actual = DEFAULT_POLICY.blocked_reason(six_to_four_form(address, suffix)) is None
    assert actual == expected


@given(st.ip_addresses(v=4))
def test_parse_numeric_host_decimal_integer(address: IPv4Address) -> None:
    """A whole address written as one decimal integer parses to that address."""
    assert parse_numeric_host(str(int(address))) == address


@given(st.ip_addresses(v=4))
def test_parse_numeric_host_hex_integer(address: IPv4Address) -> None:
    """A whole address written as one hexadecimal integer parses to that address."""
    assert parse_numeric_host(f"0x{int(address):x}") == address


@given(st.ip_addresses(v=4))
def test_parse_numeric_host_octal_dotted(address: IPv4Address) -> None:
    """An address written as four octal parts parses to that address."""
    spelling = ".".join(f"0{octet:o}" for octet in address.packed)
    assert parse_numeric_host(spelling) == address


@given(st.ip_addresses(v=4))
def test_parse_numeric_host_two_part(address: IPv4Address) -> None:
    """The a.b form, whose last part fills the low 24 bits, parses to the address."""
    value = int(address)
    spelling = f"{value >> 24}.{value & 0xFFFFFF}"
    assert parse_numeric_host(spelling) == address


@given(st.ip_addresses(v=4) | st.ip_addresses(v=6), st.data())
def test_blocked_reason_exempt_network_allows_members(
    address: IPv4Address | IPv6Address, data: st.DataObject
) -> None:
    """Any address inside an exempt network is allowed, whatever its range."""
    prefix = data.draw(st.integers(0, address.max_prefixlen), label="prefix")
    network = ip_network(f"{address}/{prefix}", strict=False)
    policy = AddressPolicy(exempt_networks=(network,))
    assert policy.blocked_reason(address) is None


@given(st.ip_addresses(v=4), st.data())
def test_blocked_reason_exempt_network_allows_mapped(
    address: IPv4Address, data: st.DataObject
) -> None:
    """An exempt IPv4 network also allows the IPv4-mapped form of its members."""
    prefix = data.draw(st.integers(0, 32), label="prefix")
    network = ip_network(f"{address}/{prefix}", strict=False)
    policy = AddressPolicy(exempt_networks=(network,))
    assert policy.blocked_reason(mapped_form(address)) is None
