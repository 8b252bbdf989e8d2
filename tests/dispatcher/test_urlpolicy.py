"""Tests for the webhook URL policy at save time and at connect time.

No test resolves a public name. An autouse fixture replaces the event loop's
getaddrinfo with a table of answers, and the one test that uses the system resolver
looks up a loopback name that /etc/hosts lists.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.addresses import AddressPolicy
from dispatcher.errors import BlockedAddress, UrlRejected, WebhookConnectionError
from dispatcher.urlpolicy import (
    MAX_URL_LENGTH,
    GuardedResolver,
    check_ip_literal,
    normalize_webhook_url,
    redact_url,
    validate_webhook_url,
)

FIELD = "products_url"
DEFAULT_POLICY = AddressPolicy()
LOOPBACK_EXEMPT_POLICY = AddressPolicy(
    exempt_networks=(ipaddress.ip_network("127.0.0.0/8"),)
)

# A name that only the stub resolver below answers for (.test is reserved, RFC 2606).
MERCHANT_HOST = "hooks.merchant.test"
SECRET_SUFFIX = "/secret-token-path?key=abc"

_SYSTEM_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


class StubNameService:
    """Scripted loop.getaddrinfo results per name: addresses, an exception, or a hang.

    A name without an entry fails like a name that does not exist, so no test can
    reach the real DNS by accident.
    """

    HANG = "hang"

    def __init__(self) -> None:
        self.answers: dict[str, Sequence[str] | BaseException | str] = {}
        self.lookups: list[tuple[str, Any]] = []

    async def getaddrinfo(self, host: str, port: Any) -> list[tuple[Any, ...]]:
        self.lookups.append((host, port))
        answer = self.answers.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answer == self.HANG:
            await asyncio.sleep(3600)
        if isinstance(answer, BaseException):
            raise answer
        return [_addrinfo(address, port) for address in answer]


def _addrinfo(address: str, port: Any) -> tuple[Any, ...]:
    if ipaddress.ip_address(address).version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


@pytest.fixture(autouse=True)
def name_service(monkeypatch: pytest.MonkeyPatch) -> StubNameService:
    """Route every loop.getaddrinfo call of the test to a StubNameService."""
    stub = StubNameService()

    async def getaddrinfo(
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, ...]]:
        return await stub.getaddrinfo(host, port)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return stub


def to_fullwidth(text: str) -> str:
    """Return `text` with each printable ASCII character in its fullwidth form."""
    return "".join(chr(ord(character) + 0xFEE0) for character in text)


def rejection(raw: str, field: str = FIELD) -> UrlRejected:
    """Return the UrlRejected that normalize_webhook_url raises for `raw`."""
    with pytest.raises(UrlRejected) as caught:
        normalize_webhook_url(field, raw)
    return caught.value


async def validation_rejection(
    raw: str, policy: AddressPolicy = DEFAULT_POLICY, field: str = FIELD
) -> UrlRejected:
    """Return the UrlRejected that validate_webhook_url raises for `raw`."""
    with pytest.raises(UrlRejected) as caught:
        await validate_webhook_url(field, raw, policy)
    return caught.value


# --- normalize_webhook_url: form checks -----------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "http://example.com/hook",
        "ftp://example.com/hook",
        "example.com/hook",
        "//example.com/hook",
        "wss://example.com/hook",
        "",
    ],
)
def test_normalize_rejects_scheme(raw: str) -> None:
    """A scheme other than https, or none at all, is rejected."""
    assert rejection(raw).code == "url_scheme"


def test_normalize_accepts_uppercase_scheme() -> None:
    """HTTPS in capitals is accepted and stored as https."""
    assert normalize_webhook_url(FIELD, "HTTPS://example.com/x").url == (
        "https://example.com/x"
    )


@pytest.mark.parametrize(
    "raw", ["https:///hook", "https://", "https://:443/hook", "https:example.com"]
)
def test_normalize_rejects_missing_host(raw: str) -> None:
    """A URL without a host is rejected."""
    assert rejection(raw).code == "url_host_missing"


@pytest.mark.parametrize(
    "raw",
    [
        "https://user:pass@example.com/hook",
        "https://user@example.com/hook",
        "https://:pass@example.com/hook",
    ],
)
def test_normalize_rejects_userinfo(raw: str) -> None:
    """Credentials in the authority are rejected."""
    assert rejection(raw).code == "url_userinfo"


@pytest.mark.parametrize(
    "raw", ["https://example.com/hook#part", "https://example.com/hook#"]
)
def test_normalize_rejects_fragment(raw: str) -> None:
    """A fragment, even an empty one, is rejected."""
    assert rejection(raw).code == "url_fragment"


@pytest.mark.parametrize(
    "raw",
    [
        " https://example.com/hook",
        "https://example.com/hook ",
        "https://exa mple.com/hook",
        "https://example.com/ho ok",
        "https://example.com/hook?a=1 2",
        "https://example.com/\thook",
        "https://example.com/hook\n",
        "https://example.com/\rhook",
        "https://example.com/\x00hook",
        "https://example.com/\x1bhook",
        "https://example.com/\x7fhook",
        "https://example.com/\x85hook",  # C1 next line
        "https://example.com/\x9fhook",
        "https://example.com/\u00a0hook",  # no-break space
        "https://example.com/\u2028hook",  # line separator
        "https://example.com\\hook",
        "https://example.com/a\\b",
        "https:\\\\example.com/hook",
    ],
)
def test_normalize_rejects_invalid_characters(raw: str) -> None:
    """Whitespace, control characters and backslashes anywhere are rejected."""
    assert rejection(raw).code == "url_invalid_characters"


def test_normalize_rejects_too_long() -> None:
    """A URL longer than 2048 characters is rejected."""
    base = "https://example.com/"
    raw = base + "a" * (MAX_URL_LENGTH + 1 - len(base))
    assert rejection(raw).code == "url_too_long"


def test_normalize_accepts_max_length() -> None:
    """A URL of exactly 2048 characters is accepted."""
    base = "https://example.com/"
    raw = base + "a" * (MAX_URL_LENGTH - len(base))
    assert normalize_webhook_url(FIELD, raw).url == raw


@pytest.mark.parametrize(
    "raw",
    [
        "https://example.com:99999/hook",
        "https://example.com:65536/hook",
        "https://example.com:port/hook",
        "https://example.com:-1/hook",
        "https://example.com:+443/hook",
        "https://example.com:٤٤٣/hook",  # Arabic-Indic digits
    ],
)
def test_normalize_rejects_invalid_port(raw: str) -> None:
    """A port that is not a decimal number in range is rejected."""
    assert rejection(raw).code == "url_invalid"


def test_normalize_rejects_port_zero() -> None:
    """Port 0, which no connection can use, is rejected."""
    with pytest.raises(UrlRejected):
        normalize_webhook_url(FIELD, "https://example.com:0/hook")


@pytest.mark.parametrize(
    "raw",
    [
        "https://localhost/hook",
        "https://localhost:8443/hook",
        "https://sub.localhost/hook",
        "https://a.b.localhost/hook",
        "https://LOCALHOST./hook",
        "https://Sub.LocalHost./hook",
        f"https://{to_fullwidth('localhost')}/hook",
    ],
)
def test_normalize_rejects_localhost(raw: str) -> None:
    """localhost and every name under .localhost are rejected."""
    assert rejection(raw).code == "url_localhost"


def test_normalize_rejects_zone_id() -> None:
    """An IPv6 literal with a zone id is rejected."""
    assert rejection("https://[fe80::1%25eth0]/hook").code == "url_invalid"


@pytest.mark.parametrize(
    "raw", ["https://a_b.example.com/hook", f"https://{'a' * 64}.example.com/hook"]
)
def test_normalize_rejects_invalid_host_name(raw: str) -> None:
    """A host name that IDNA cannot encode is rejected."""
    assert rejection(raw).code == "url_invalid_host"


# --- normalize_webhook_url: normalisation --------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://EXAMPLE.COM/Hook", "https://example.com/Hook"),
        ("https://Example.Com:8443/Hook?Q=V", "https://example.com:8443/Hook?Q=V"),
        ("https://example.com./hook", "https://example.com/hook"),
        ("https://EXAMPLE.com.:8443/", "https://example.com:8443/"),
        ("https://пример.рф/x", "https://xn--e1afmkfd.xn--p1ai/x"),
        ("https://ПРИМЕР.РФ/x", "https://xn--e1afmkfd.xn--p1ai/x"),
        ("https://example.com", "https://example.com"),
        ("https://example.com/hook?", "https://example.com/hook"),
    ],
)
def test_normalize_host_forms(raw: str, expected: str) -> None:
    """The host is lowercased, IDNA-encoded and stripped of a trailing dot."""
    assert normalize_webhook_url(FIELD, raw).url == expected


def test_normalize_reports_host_and_port() -> None:
    """The result carries the normalised host and the explicit port."""
    checked = normalize_webhook_url(FIELD, "https://Пример.РФ.:8443/x")
    assert checked.host == "xn--e1afmkfd.xn--p1ai"
    assert checked.port == 8443
    assert checked.ip is None


def test_normalize_default_port() -> None:
    """Without an explicit port the result reports 443."""
    assert normalize_webhook_url(FIELD, "https://example.com/x").port == 443


@pytest.mark.parametrize(
    ("raw", "expected_url"),
    [
        ("https://2130706433:8443/p", "https://127.0.0.1:8443/p"),
        ("https://0x7f.1/p", "https://127.0.0.1/p"),
        ("https://127.1/p", "https://127.0.0.1/p"),
        ("https://0177.0.0.1/p", "https://127.0.0.1/p"),
        ("https://0x7f000001/p", "https://127.0.0.1/p"),
        ("https://127.0.0.1./p", "https://127.0.0.1/p"),
        (f"https://{to_fullwidth('127.0.0.1')}/p", "https://127.0.0.1/p"),
        ("https://127。0。0。1/p", "https://127.0.0.1/p"),  # ideographic full stop
    ],
)
def test_normalize_rewrites_numeric_host(raw: str, expected_url: str) -> None:
    """Numeric IPv4 spellings are rewritten as a dotted quad."""
    assert normalize_webhook_url(FIELD, raw).url == expected_url


def test_normalize_numeric_host_fields() -> None:
    """A numeric host is reported as the address it denotes."""
    checked = normalize_webhook_url(FIELD, "https://2130706433:8443/p")
    assert checked.host == "127.0.0.1"
    assert checked.port == 8443
    assert checked.ip == ipaddress.ip_address("127.0.0.1")


def test_normalize_compresses_ipv6_literal() -> None:
    """An IPv6 literal is written in compressed form inside brackets."""
    checked = normalize_webhook_url(FIELD, "https://[2606:4700:0:0::1111]:8443/x")
    assert checked.url == "https://[2606:4700::1111]:8443/x"


@given(st.ip_addresses(v=4))
def test_normalize_decimal_host_any_ipv4(address: ipaddress.IPv4Address) -> None:
    """Every IPv4 address written as one decimal integer is rewritten to it."""
    checked = normalize_webhook_url(FIELD, f"https://{int(address)}/p")
    assert checked.ip == address


# --- Error fields and messages --------------------------------------------------

# URLs that normalize_webhook_url rejects, each with the secret path and query.
REJECTED_WITH_SECRET = [
    "http://example.com" + SECRET_SUFFIX,
    "https://user:pass@example.com" + SECRET_SUFFIX,
    "https://example.com" + SECRET_SUFFIX + "#frag",
    "https://example.com" + SECRET_SUFFIX + "&x=a b",
    "https://example.com" + SECRET_SUFFIX + "\n",
    "https://example.com" + SECRET_SUFFIX + "&pad=" + "a" * MAX_URL_LENGTH,
    "https://example.com:99999" + SECRET_SUFFIX,
    "https://localhost" + SECRET_SUFFIX,
    "https://a_b.example.com" + SECRET_SUFFIX,
    "https://[fe80::1%25eth0]" + SECRET_SUFFIX,
    "https://" + SECRET_SUFFIX,
]


@pytest.mark.parametrize("raw", REJECTED_WITH_SECRET)
def test_normalize_error_names_field(raw: str) -> None:
    """The error carries the field name it was given, in .field and the message."""
    error = rejection(raw, field="cart_get_url")
    assert error.field == "cart_get_url"
    assert "cart_get_url" in error.message


@pytest.mark.parametrize("raw", REJECTED_WITH_SECRET)
def test_normalize_error_hides_path_and_query(raw: str) -> None:
    """The error message contains neither the URL's path nor its query."""
    message = rejection(raw).message
    assert "secret-token-path" not in message
    assert "abc" not in message


def test_normalize_error_hides_backslash_path() -> None:
    """A path written after a backslash, as browsers read it, stays out of messages."""
    message = rejection("https://example.com\\secret-token-path?key=abc").message
    assert "secret-token-path" not in message


# --- validate_webhook_url -------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "https://127.0.0.1/hook",
        "https://2130706433:8443/p",
        "https://0x7f.1/hook",
        "https://0/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://[::]/",
        "https://[::ffff:10.0.0.1]/",
        "https://[::ffff:127.0.0.1]:8443/",
        "https://[64:ff9b::7f00:1]/",
        "https://[2002:7f00:1::]/",
        "https://[fd00::1]/",
        "https://[2001:db8::1]/",
    ],
)
async def test_validate_rejects_private_literal(raw: str) -> None:
    """A host that is a forbidden address, in any spelling, is rejected."""
    assert (await validation_rejection(raw)).code == "url_private"


async def test_validate_literal_skips_resolution(
    name_service: StubNameService,
) -> None:
    """An IP literal is judged as written, without a name lookup."""
    await validation_rejection("https://127.0.0.1/hook")
    assert name_service.lookups == []


@pytest.mark.parametrize(
    "raw", ["https://8.8.8.8/hook", "https://[2606:4700::1111]:8443/hook"]
)
async def test_validate_accepts_public_literal(raw: str) -> None:
    """A host that is a public address is accepted unchanged."""
    assert await validate_webhook_url(FIELD, raw, DEFAULT_POLICY) == raw


async def test_validate_exempt_policy_accepts_loopback() -> None:
    """An exempt 127.0.0.0/8 lets a loopback URL through, rewritten to a dotted quad."""
    url = await validate_webhook_url(
        FIELD, "https://2130706433:8443/p", LOOPBACK_EXEMPT_POLICY
    )
    assert url == "https://127.0.0.1:8443/p"


async def test_validate_exempt_policy_rejects_private() -> None:
    """An exempt 127.0.0.0/8 still rejects RFC 1918 addresses."""
    error = await validation_rejection("https://10.0.0.1/", LOOPBACK_EXEMPT_POLICY)
    assert error.code == "url_private"


async def test_validate_runs_form_checks() -> None:
    """The form checks apply before any address check."""
    assert (await validation_rejection("http://8.8.8.8/")).code == "url_scheme"


async def test_validate_accepts_public_name(name_service: StubNameService) -> None:
    """A name whose every address is public is accepted and returned normalised."""
    name_service.answers[MERCHANT_HOST] = ["8.8.8.8", "2606:4700::1111"]
    url = await validate_webhook_url(
        FIELD, "https://HOOKS.Merchant.TEST.:8443/x?y=1", DEFAULT_POLICY
    )
    assert url == "https://hooks.merchant.test:8443/x?y=1"


async def test_validate_resolves_normalised_host(
    name_service: StubNameService,
) -> None:
    """The lookup uses the normalised host and the URL's port."""
    name_service.answers[MERCHANT_HOST] = ["8.8.8.8"]
    await validate_webhook_url(
        FIELD, "https://HOOKS.Merchant.TEST.:8443/x", DEFAULT_POLICY
    )
    assert name_service.lookups == [(MERCHANT_HOST, 8443)]


async def test_validate_resolves_idn_as_ascii(name_service: StubNameService) -> None:
    """An internationalised name is looked up in its ASCII form."""
    name_service.answers["xn--e1afmkfd.xn--p1ai"] = ["8.8.8.8"]
    url = await validate_webhook_url(FIELD, "https://пример.рф/x", DEFAULT_POLICY)
    assert url == "https://xn--e1afmkfd.xn--p1ai/x"


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.1"],
        ["8.8.8.8", "10.0.0.1"],
        ["8.8.8.8", "1.1.1.1", "169.254.169.254"],
        ["2606:4700::1111", "::1"],
        ["2606:4700::1111", "::ffff:192.168.1.1"],
        ["fd00::1"],
    ],
)
async def test_validate_rejects_any_private_address(
    name_service: StubNameService, addresses: list[str]
) -> None:
    """A name is rejected if any one of its addresses is forbidden."""
    name_service.answers[MERCHANT_HOST] = addresses
    error = await validation_rejection(f"https://{MERCHANT_HOST}/hook")
    assert error.code == "url_private"


async def test_validate_exempt_policy_accepts_loopback_name(
    name_service: StubNameService,
) -> None:
    """A name resolving into an exempt network is accepted."""
    name_service.answers[MERCHANT_HOST] = ["127.0.0.1", "::ffff:127.0.0.2"]
    url = await validate_webhook_url(
        FIELD, f"https://{MERCHANT_HOST}/hook", LOOPBACK_EXEMPT_POLICY
    )
    assert url == f"https://{MERCHANT_HOST}/hook"


@pytest.mark.parametrize(
    "failure",
    [
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        OSError("resolver failed"),
    ],
)
async def test_validate_unresolvable_name(
    name_service: StubNameService, failure: OSError
) -> None:
    """A name whose lookup fails is rejected as unresolvable."""
    name_service.answers[MERCHANT_HOST] = failure
    error = await validation_rejection(f"https://{MERCHANT_HOST}/hook")
    assert error.code == "url_unresolvable"


async def test_validate_empty_answer_unresolvable(
    name_service: StubNameService,
) -> None:
    """A lookup that returns no addresses is rejected as unresolvable."""
    name_service.answers[MERCHANT_HOST] = []
    error = await validation_rejection(f"https://{MERCHANT_HOST}/hook")
    assert error.code == "url_unresolvable"


async def test_validate_resolver_hang_times_out(
    name_service: StubNameService,
) -> None:
    """A lookup that never answers is rejected as unresolvable after the timeout."""
    name_service.answers[MERCHANT_HOST] = StubNameService.HANG
    started = time.monotonic()
    with pytest.raises(UrlRejected) as caught:
        await validate_webhook_url(
            FIELD, f"https://{MERCHANT_HOST}/hook", DEFAULT_POLICY, resolve_timeout=0.2
        )
    elapsed = time.monotonic() - started
    assert caught.value.code == "url_unresolvable"
    assert elapsed < 3


@pytest.mark.parametrize(
    ("answer", "raw"),
    [
        (["10.0.0.1"], f"https://{MERCHANT_HOST}{SECRET_SUFFIX}"),
        (OSError("resolver failed"), f"https://{MERCHANT_HOST}{SECRET_SUFFIX}"),
        (None, f"https://127.0.0.1{SECRET_SUFFIX}"),
    ],
)
async def test_validate_error_names_field_hides_path(
    name_service: StubNameService, answer: Any, raw: str
) -> None:
    """Address errors name the field and never show the path or query."""
    if answer is not None:
        name_service.answers[MERCHANT_HOST] = answer
    error = await validation_rejection(raw, field="cart_url")
    assert error.field == "cart_url"
    assert "cart_url" in error.message
    assert "secret-token-path" not in error.message
    assert "abc" not in error.message


def _loopback_name_from_hosts_file() -> str | None:
    """Return a name other than localhost that /etc/hosts maps to loopback, if any.

    The name is used only when nsswitch consults the hosts file before DNS, so the
    lookup is answered locally.
    """
    try:
        nsswitch = Path("/etc/nsswitch.conf").read_text()
        hosts = Path("/etc/hosts").read_text()
    except OSError:
        return None
    sources = next(
        (
            line.split(":", 1)[1].split()
            for line in nsswitch.splitlines()
            if line.startswith("hosts:")
        ),
        [],
    )
    if not sources or sources[0] != "files":
        return None
    for line in hosts.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if not address.is_loopback:
            continue
        for name in fields[1:]:
            lowered = name.lower().rstrip(".")
            if lowered == "localhost" or lowered.endswith(".localhost"):
                continue
            if name.isascii() and name.replace("-", "").replace(".", "").isalnum():
                return name
    return None


@pytest.fixture
def system_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Restore the real getaddrinfo and yield a hosts-file name for loopback."""
    name = _loopback_name_from_hosts_file()
    if name is None:
        pytest.skip("/etc/hosts lists no loopback name besides localhost")
    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", _SYSTEM_GETADDRINFO)
    yield name


async def test_validate_rejects_hosts_file_loopback(system_resolver: str) -> None:
    """A name the system resolves to loopback is rejected."""
    error = await validation_rejection(f"https://{system_resolver}:8443/hook")
    assert error.code == "url_private"


async def test_validate_exempt_hosts_file_loopback(system_resolver: str) -> None:
    """A name the system resolves to loopback passes when loopback is exempt."""
    raw = f"https://{system_resolver.lower()}:8443/hook"
    assert await validate_webhook_url(FIELD, raw, LOOPBACK_EXEMPT_POLICY) == raw


# --- check_ip_literal -----------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "[::1]",
        "::ffff:10.0.0.1",
        "fe80::1%eth0",
    ],
)
def test_check_ip_literal_rejects_forbidden(host: str) -> None:
    """A forbidden address in any numeric spelling raises BlockedAddress."""
    with pytest.raises(BlockedAddress):
        check_ip_literal(DEFAULT_POLICY, host)


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "2606:4700::1111", "[2606:4700::1111]", "example.com"]
)
def test_check_ip_literal_allows_public_or_name(host: str) -> None:
    """A public address passes, and a name is left to the resolver."""
    check_ip_literal(DEFAULT_POLICY, host)


def test_check_ip_literal_exempt_policy() -> None:
    """An exempt 127.0.0.0/8 lets 127.0.0.1 through."""
    check_ip_literal(LOOPBACK_EXEMPT_POLICY, "127.0.0.1")


def test_check_ip_literal_error_code() -> None:
    """The raised error reports the blocked_address code."""
    with pytest.raises(BlockedAddress) as caught:
        check_ip_literal(DEFAULT_POLICY, "10.0.0.1")
    assert caught.value.code == "blocked_address"


# --- GuardedResolver ------------------------------------------------------------


class ScriptedResolver(AbstractResolver):
    """An aiohttp resolver that returns fixed addresses and records each lookup."""

    def __init__(
        self, addresses: Sequence[str] = (), error: OSError | None = None
    ) -> None:
        self.addresses = list(addresses)
        self.error = error
        self.lookups: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        if self.error is not None:
            raise self.error
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=(
                    socket.AF_INET6
                    if ipaddress.ip_address(address).version == 6
                    else socket.AF_INET
                ),
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_guarded_resolver_returns_public() -> None:
    """Public answers of the inner resolver are returned unchanged."""
    inner = ScriptedResolver(["8.8.8.8", "2606:4700::1111"])
    resolver = GuardedResolver(DEFAULT_POLICY, inner)
    results = await resolver.resolve(MERCHANT_HOST, 443)
    assert [result["host"] for result in results] == ["8.8.8.8", "2606:4700::1111"]


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["8.8.8.8", "10.0.0.1"],
        ["8.8.8.8", "169.254.169.254"],
        ["2606:4700::1111", "::1"],
        ["2606:4700::1111", "::ffff:127.0.0.1"],
        ["fe80::1%eth0"],
    ],
)
async def test_guarded_resolver_blocks_any_private(addresses: list[str]) -> None:
    """A host with any forbidden address raises BlockedAddress."""
    resolver = GuardedResolver(DEFAULT_POLICY, ScriptedResolver(addresses))
    with pytest.raises(BlockedAddress):
        await resolver.resolve(MERCHANT_HOST, 443)


@pytest.mark.parametrize(
    "host", ["127.1", "127.0.0.1", "2130706433", "0x7f.1", "::1", "10.0.0.1"]
)
async def test_guarded_resolver_blocks_numeric_host(host: str) -> None:
    """A forbidden numeric host raises BlockedAddress."""
    resolver = GuardedResolver(DEFAULT_POLICY, ScriptedResolver(["8.8.8.8"]))
    with pytest.raises(BlockedAddress):
        await resolver.resolve(host, 443)


async def test_guarded_resolver_numeric_skips_inner() -> None:
    """A numeric host is checked without calling the inner resolver."""
    inner = ScriptedResolver(["8.8.8.8"])
    resolver = GuardedResolver(DEFAULT_POLICY, inner)
    with pytest.raises(BlockedAddress):
        await resolver.resolve("127.1", 443)
    assert inner.lookups == []


async def test_guarded_resolver_public_numeric_host() -> None:
    """A public numeric host resolves to itself as a dotted quad."""
    inner = ScriptedResolver()
    resolver = GuardedResolver(DEFAULT_POLICY, inner)
    results = await resolver.resolve("134744072", 443)  # 8.8.8.8
    assert [result["host"] for result in results] == ["8.8.8.8"]
    assert results[0]["port"] == 443
    assert inner.lookups == []


async def test_guarded_resolver_exempt_literal() -> None:
    """An exempt 127.0.0.0/8 lets the literal 127.0.0.1 through."""
    resolver = GuardedResolver(LOOPBACK_EXEMPT_POLICY, ScriptedResolver())
    results = await resolver.resolve("127.0.0.1", 8443)
    assert [result["host"] for result in results] == ["127.0.0.1"]


async def test_guarded_resolver_exempt_name() -> None:
    """An exempt 127.0.0.0/8 lets a name resolving to 127.0.0.1 through."""
    inner = ScriptedResolver(["127.0.0.1"])
    resolver = GuardedResolver(LOOPBACK_EXEMPT_POLICY, inner)
    results = await resolver.resolve(MERCHANT_HOST, 8443)
    assert [result["host"] for result in results] == ["127.0.0.1"]


async def test_guarded_resolver_exempt_still_blocks() -> None:
    """An exempt 127.0.0.0/8 still blocks a name resolving to 10.0.0.1."""
    inner = ScriptedResolver(["127.0.0.1", "10.0.0.1"])
    resolver = GuardedResolver(LOOPBACK_EXEMPT_POLICY, inner)
    with pytest.raises(BlockedAddress):
        await resolver.resolve(MERCHANT_HOST, 8443)


async def test_guarded_resolver_lookup_failure() -> None:
    """A failed lookup raises WebhookConnectionError."""
    inner = ScriptedResolver(error=socket.gaierror(socket.EAI_NONAME, "not known"))
    resolver = GuardedResolver(DEFAULT_POLICY, inner)
    with pytest.raises(WebhookConnectionError):
        await resolver.resolve(MERCHANT_HOST, 443)


async def test_guarded_resolver_close_closes_inner() -> None:
    """Closing the guarded resolver closes the inner one."""
    inner = ScriptedResolver()
    await GuardedResolver(DEFAULT_POLICY, inner).close()
    assert inner.closed


# --- redact_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://example.com:8443/secret-token-path?key=abc",
            "https://example.com:8443/...",
        ),
        ("https://example.com/secret-token-path", "https://example.com/..."),
        ("https://example.com?key=abc", "https://example.com/..."),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/#frag", "https://example.com/..."),
        ("https://user:pass@example.com/x?key=abc", "https://example.com/..."),
        ("https://[2606:4700::1111]:8443/x", "https://[2606:4700::1111]:8443/..."),
    ],
)
def test_redact_url_keeps_scheme_and_authority(url: str, expected: str) -> None:
    """Only the scheme and host:port survive, with a marker for a dropped path."""
    assert redact_url(url) == expected


def test_redact_url_drops_path_and_query() -> None:
    """The path and query never appear in the redacted URL."""
    redacted = redact_url("https://u:pw@example.com:8443/secret-token-path?key=abc")
    assert "secret-token-path" not in redacted
    assert "abc" not in redacted
    assert "pw" not in redacted


def test_redact_url_malformed_host_hides_path() -> None:
    """A URL with an unterminated IPv6 host still loses its path."""
    assert "secret-token-path" not in redact_url("https://[::1/secret-token-path")


def test_redact_url_without_scheme() -> None:
    """Text without "://" is replaced by a placeholder."""
    assert redact_url("shop.example/secret") == "<not a URL>"
