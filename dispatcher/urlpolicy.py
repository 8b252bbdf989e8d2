"""The URL policy for merchant webhooks, at save time and at connect time.

At save time `validate_webhook_url` normalises a URL and checks its form, then
resolves its host and checks every address. At connect time `GuardedResolver`
checks the addresses each connection actually uses, so a name that later resolves
somewhere private (DNS rebinding) is still refused, and `check_ip_literal` covers
hosts written as IP literals, for which aiohttp never calls a resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import idna
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from dispatcher.addresses import AddressPolicy, IPAddress, parse_numeric_host
from dispatcher.errors import BlockedAddress, UrlRejected, WebhookConnectionError

MAX_URL_LENGTH = 2048

# How long a save may wait for name resolution. A resolver that hangs must not hold
# an admin request open; an unanswered name is reported as unresolvable.
SAVE_RESOLVE_TIMEOUT_SECONDS = 5.0

# A backslash is read as "/" by browsers and some parsers but not others, which
# lets two parsers disagree on the host.
_BACKSLASH = "\\"
# Unicode categories rejected anywhere in a URL: controls (Cc), invisible format
# characters such as U+202E RIGHT-TO-LEFT OVERRIDE (Cf), lone surrogates (Cs),
# private use (Co), unassigned (Cn) and separators, including every space (Z*).
# Controls and spaces are how header injection starts, and invisible characters
# make a URL display differently from what is called.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_AUTHORITY_END = re.compile(r"[/?#\\]")


@dataclass(frozen=True)
class WebhookUrl:
    """A URL that passed the form checks, with its host normalised."""

    url: str
    host: str
    port: int
    ip: IPAddress | None


def redact_url(url: str) -> str:
    """Return scheme and authority only; paths and queries may carry tokens.

    The URL is cut at the first "/", "?", "#" or backslash after the authority,
    because some parsers read a backslash as "/" and what follows it as the path.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "<not a URL>"
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    remainder = rest[len(authority) :]
    host = authority.rpartition("@")[2]
    suffix = "/..." if remainder not in ("", "/") else "/"
    return f"{scheme}://{host}{suffix}"


def _has_forbidden_character(text: str) -> bool:
    return any(
        character == _BACKSLASH
        or unicodedata.category(character) in _FORBIDDEN_CATEGORIES
        for character in text
    )


def normalize_webhook_url(field: str, raw: str) -> WebhookUrl:
    """Check the form of a webhook URL and return it with its host normalised.

    Raises UrlRejected naming `field`. The host is lowercased, converted from IDNA
    to ASCII and stripped of a trailing dot, and numeric spellings of an IPv4
    address are rewritten as a dotted quad.
    """
    shown = redact_url(raw)
    if len(raw) > MAX_URL_LENGTH:
        raise UrlRejected(
            field,
            f"{field} must be at most {MAX_URL_LENGTH} characters, got {len(raw)}",
            "url_too_long",
        )
    if _has_forbidden_character(raw):
        raise UrlRejected(
            field,
            f"{field} must not contain whitespace, control or invisible characters, "
            f"or backslashes, got {shown!r}",
            "url_invalid_characters",
        )
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(
            field, f"{field} is not a valid URL ({exc}), got {shown!r}", "url_invalid"
        ) from exc

    if parts.scheme.lower() != "https":
        raise UrlRejected(field, f"{field} must use https, got {shown!r}", "url_scheme")
    if "@" in parts.netloc:
        raise UrlRejected(
            field,
            f"{field} must not contain credentials (user:password@), got {shown!r}",
            "url_userinfo",
        )
    if parts.fragment or raw.endswith("#"):
        raise UrlRejected(
            field,
            f"{field} must not contain a fragment (#...), got {shown!r}",
            "url_fragment",
        )
    if port == 0:
        raise UrlRejected(
            field, f"{field} must not use port 0, got {shown!r}", "url_invalid"
        )
    if not parts.hostname:
        raise UrlRejected(
            field, f"{field} must name a host, got {shown!r}", "url_host_missing"
        )

    host, ip = _normalize_host(field, parts.hostname, shown)
    netloc_host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else host
    netloc = netloc_host if port is None else f"{netloc_host}:{port}"
    url = urlunsplit(("https", netloc, parts.path, parts.query, ""))
    return WebhookUrl(url=url, host=host, port=port or 443, ip=ip)


def _normalize_host(
    field: str, hostname: str, shown: str
) -> tuple[str, IPAddress | None]:
    if "%" in hostname:
        raise UrlRejected(
            field, f"{field} must not use an IPv6 zone id, got {shown!r}", "url_invalid"
        )
    ip = parse_numeric_host(hostname)
    if ip is not None:
        return str(ip), ip

    name = hostname.rstrip(".") if hostname.endswith(".") else hostname
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UrlRejected(
            field,
            f"{field} has an invalid host name ({exc}), got {shown!r}",
            "url_invalid_host",
        ) from exc
    ascii_name = ascii_name.lower()

    # A name can turn numeric only after IDNA mapping (fullwidth digits, for one).
    ip = parse_numeric_host(ascii_name)
    if ip is not None:
        return str(ip), ip
    if ascii_name == "localhost" or ascii_name.endswith(".localhost"):
        raise UrlRejected(
            field,
            f"{field} must not point at localhost, got {shown!r}",
            "url_localhost",
        )
    return ascii_name, None


async def validate_webhook_url(
    field: str,
    raw: str,
    policy: AddressPolicy,
    *,
    resolver: AbstractResolver | None = None,
    resolve_timeout: float = SAVE_RESOLVE_TIMEOUT_SECONDS,
) -> str:
    """Return the normalised URL if it passes the whole policy, else raise.

    A host name is resolved with `resolver` (the system resolver by default) and
    every address it resolves to must be allowed. Raises UrlRejected naming
    `field`.
    """
    checked = normalize_webhook_url(field, raw)
    shown = redact_url(checked.url)

    if checked.ip is not None:
        addresses: list[IPAddress] = [checked.ip]
    else:
        try:
            addresses = await asyncio.wait_for(
                _resolve_all(
                    resolver or ThreadedResolver(), checked.host, checked.port
                ),
                resolve_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise UrlRejected(
                field,
                f"{field} host {checked.host!r} could not be resolved; check the "
                f"name, got {shown!r}",
                "url_unresolvable",
            ) from exc

    found = policy.first_blocked(addresses)
    if found is not None:
        address, reason = found
        raise UrlRejected(
            field,
            f"{field} must point at a public address, but {checked.host!r} is "
            f"{address} ({reason}), got {shown!r}",
            "url_private",
        )
    return checked.url


async def _resolve_all(
    resolver: AbstractResolver, host: str, port: int
) -> list[IPAddress]:
    results = await resolver.resolve(host, port, socket.AF_UNSPEC)
    if not results:
        raise OSError(f"no addresses for {host!r}")
    return [ipaddress.ip_address(result["host"]) for result in results]


def check_ip_literal(policy: AddressPolicy, host: str) -> None:
    """Raise BlockedAddress if `host` is a forbidden IP literal.

    aiohttp connects to IP literals without calling the resolver, so the transport
    calls this before every attempt to keep the connect-time check complete.
    """
    ip = parse_numeric_host(host)
    if ip is None:
        return
    reason = policy.blocked_reason(ip)
    if reason is not None:
        raise BlockedAddress(f"{host} is a forbidden address ({reason})")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses hosts resolving to forbidden addresses.

    Every address returned for a host is checked, not only the first: aiohttp may
    fall back to any of them, and a mixed result is a classic rebinding trick.
    """

    # NOTE: the default inner resolver runs getaddrinfo in the event loop's
    # default thread pool. A lookup that hangs is abandoned at the call's
    # timeout, but its thread stays busy until the system resolver gives up, so
    # enough hanging hosts at once could delay lookups for other tenants.
    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None):
        self._policy = policy
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        numeric = parse_numeric_host(host)
        if numeric is not None:
            check_ip_literal(self._policy, host)
            return [_literal_result(host, numeric, port)]

        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise WebhookConnectionError(f"could not resolve {host!r}: {exc}") from exc

        addresses = [ipaddress.ip_address(result["host"]) for result in results]
        found = self._policy.first_blocked(addresses)
        if found is not None:
            address, reason = found
            raise BlockedAddress(f"{host} resolved to {address} ({reason})")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _literal_result(host: str, address: IPAddress, port: int) -> ResolveResult:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return ResolveResult(
        hostname=host,
        host=str(address),
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )
