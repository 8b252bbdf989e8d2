"""Hostile merchants: slow, endless, oversized, malformed and mis-certified responses.

Each behaviour runs on its own raw TLS server on 127.0.0.1 (see conftest.py) and
goes through the products route, the in-process dispatcher and, for a subset, the
cart route. Whatever the merchant does, the platform must respond with 200 with every
SKU unavailable, within two attempts of the tenant's timeout plus the retry wait,
without buffering much more than the 1 MiB body cap.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import trustme
from structlog.testing import capture_logs

from dispatcher.products import ProductsCheckRequest
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from dispatcher.webhook_settings import WebhookSettingsUpdate
from tests.conftest import INTERNAL_AUTH, TenantKeys
from tests.faults.conftest import (
    MEMORY_PEAK_LIMIT_BYTES,
    Behaviour,
    RawServer,
    StartRaw,
    traced_peak,
    wait_for_client_close,
    worst_case_seconds,
)

WEBHOOKS = "/api/v1/admin/webhooks"
TIMEOUT_SECONDS = 1.0
SKUS = ("a", "b")
# Delay between the single bytes of a dripped response. Dripped responses never
# end, so only the tenant's timeout stops them.
DRIP_INTERVAL_SECONDS = 0.02
ENTRY = b'{"sku":"x","price":1,"in_stock":true},'
# An endless sender stops after this many bytes in case the client never
# disconnects. That is far beyond the 1 MiB cap, so the cap is reached first.
ENDLESS_STOP_BYTES = 64 * 1024 * 1024
NESTING_DEPTH = 100_000

Certificate = Literal["test_ca", "other_name", "unknown_ca"]


# --- behaviours -------------------------------------------------------------


def head(*lines: str) -> bytes:
    """Return an HTTP/1.1 status line and headers, ending with the blank line."""
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def drip(writer: asyncio.StreamWriter, data: bytes) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(DRIP_INTERVAL_SECONDS)


async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # No length and no chunking: the body ends only when the connection does.
    writer.write(head("HTTP/1.1 200 OK", "Content-Type: application/json"))
    await drip(writer, b'{"products":[')
    while True:
        await drip(writer, ENTRY)


async def slow_headers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await drip(writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    await drip(writer, b"X-Padding: ")
    while True:
        await drip(writer, b"a")


@functools.cache
def gzip_bomb() -> bytes:
    """Return 50 MiB of zeros, gzip-compressed (about 50 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(50)]
    parts.append(compressor.flush())
    return b"".join(parts)


def complete_answer(body: bytes, *headers: str) -> Behaviour:
    """Send a 200 with `body` and Connection: close, then wait for the client."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(
            head(
                "HTTP/1.1 200 OK",
                f"Content-Length: {len(body)}",
                "Connection: close",
                *headers,
            )
            + body
        )
        await writer.drain()
        await wait_for_client_close(reader)

    return answer


def gzip_bomb_answer() -> Behaviour:
    return complete_answer(
        gzip_bomb(), "Content-Type: application/json", "Content-Encoding: gzip"
    )


async def huge_content_length(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(
        head("HTTP/1.1 200 OK", "Content-Length: 10000000000") + b'{"products":[]}'
    )
    await writer.drain()
    await wait_for_client_close(reader)


async def endless_headers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    lines = b"X-Padding: " + b"a" * 100 + b"\r\n"
    sent = 0
    while sent < ENDLESS_STOP_BYTES and not writer.is_closing():
        writer.write(lines * 100)
        await writer.drain()
        await asyncio.sleep(0)  # see endless_chunked
        sent += len(lines) * 100


async def garbage_status_line(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()
    await wait_for_client_close(reader)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def endless_chunked(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(
        head(
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        )
    )
    writer.write(chunk(b'{"products":['))
    entries = chunk(ENTRY * 100)
    sent = 0
    while sent < ENDLESS_STOP_BYTES and not writer.is_closing():
        writer.write(entries)
        await writer.drain()
        # drain() returns without yielding while the buffer is low, so yield here
        # to let a lost connection be noticed before the next write.
        await asyncio.sleep(0)
        sent += len(entries)


def deep_nesting() -> Behaviour:
    body = b'{"products":' + b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH + b"}"
    return complete_answer(body, "Content-Type: application/json")


def invalid_utf8() -> Behaviour:
    body = b'{"products":[{"sku":"a\xff\xfe","price":1,"in_stock":true}]}'
    return complete_answer(body, "Content-Type: application/json")


def html_page() -> Behaviour:
    body = b"<!DOCTYPE html><html><body><h1>Welcome to our shop</h1></body></html>"
    return complete_answer(body, "Content-Type: text/html; charset=utf-8")


async def truncated_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(head("HTTP/1.1 200 OK", "Content-Length: 1000") + b"[" * 100)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def priced_answer() -> Behaviour:
    """Return a valid products response, never read when the certificate is bad."""
    body = b'{"products":[{"sku":"a","price":1,"in_stock":true}]}'
    return complete_answer(body, "Content-Type: application/json")


@dataclass(frozen=True)
class Hostile:
    name: str
    make_behaviour: Callable[[], Behaviour]
    reason: str
    # The delivery rules never retry oversized or invalid bodies and TLS
    # failures. Timeouts are retried, and a body cut short is left open.
    never_retried: bool
    # What failure_events() returns for one products check: evidence that the
    # call failed because of this behaviour and not for some other reason.
    failure: list[str]
    certificate: Certificate = "test_ca"


# failure_events() of each kind of failure: the transport's error code, plus
# "products.invalid_response" when the products check rejected the body.
TIMED_OUT = ["timeout"]
INVALID = ["invalid_response", "products.invalid_response"]
REJECTED = ["products.invalid_response"]
CUT_SHORT = ["connection_failed"]
TLS_FAILED = ["tls_error"]
TIMEOUT = "webhook_timeout"
ERROR = "webhook_error"
HOSTILE = [
    Hostile("slow_body", lambda: slow_body, TIMEOUT, False, TIMED_OUT),
    Hostile("slow_headers", lambda: slow_headers, TIMEOUT, False, TIMED_OUT),
    Hostile("endless_headers", lambda: endless_headers, ERROR, True, INVALID),
    Hostile("garbage_status_line", lambda: garbage_status_line, ERROR, True, INVALID),
    Hostile("gzip_bomb", gzip_bomb_answer, ERROR, True, INVALID),
    Hostile("huge_content_length", lambda: huge_content_length, ERROR, True, INVALID),
    Hostile("endless_chunked", lambda: endless_chunked, ERROR, True, INVALID),
    Hostile("deep_nesting", deep_nesting, ERROR, True, REJECTED),
    Hostile("invalid_utf8", invalid_utf8, ERROR, True, REJECTED),
    Hostile("html_200", html_page, ERROR, True, REJECTED),
    Hostile("truncated_body", lambda: truncated_body, ERROR, False, CUT_SHORT),
    Hostile("other_name_cert", priced_answer, ERROR, True, TLS_FAILED, "other_name"),
    Hostile("unknown_ca", priced_answer, ERROR, True, TLS_FAILED, "unknown_ca"),
]
CART_HOSTILE = [
    hostile
    for hostile in HOSTILE
    if hostile.name
    in {"html_200", "slow_body", "endless_chunked", "other_name_cert", "unknown_ca"}
]


def by_name(cases: list[Hostile]) -> Any:
    return pytest.mark.parametrize("hostile", cases, ids=[case.name for case in cases])


# --- fixtures and helpers ---------------------------------------------------


@pytest.fixture(scope="session")
def certificates(
    server_ssl: ssl.SSLContext, ca: trustme.CA
) -> dict[str, ssl.SSLContext]:
    """Return server TLS contexts: the test CA's, another name's, an unknown CA's."""
    other_name = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.test").configure_cert(other_name)
    unknown_ca = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(unknown_ca)
    return {"test_ca": server_ssl, "other_name": other_name, "unknown_ca": unknown_ca}


async def start_hostile(
    start_raw: StartRaw, certificates: dict[str, ssl.SSLContext], hostile: Hostile
) -> RawServer:
    return await start_raw(hostile.make_behaviour(), certificates[hostile.certificate])


def failure_events(logs: list[dict[str, Any]]) -> list[str]:
    """Return the transport's error codes and products-body rejections in `logs`."""
    events = []
    for entry in logs:
        if entry["event"] == "webhook.failed":
            events.append(entry["error"])
        elif entry["event"] == "products.invalid_response":
            events.append("products.invalid_response")
    return events


def unavailable(reason: str) -> list[dict[str, str]]:
    return [{"sku": sku, "reason": reason} for sku in SKUS]


def check_request() -> ProductsCheckRequest:
    return ProductsCheckRequest.model_validate(
        {"store_id": "store-1", "products": [{"sku": sku} for sku in SKUS]}
    )


async def configure(client: Any, tenant: TenantKeys, **values: Any) -> None:
    values.setdefault("timeout_seconds", TIMEOUT_SECONDS)
    response = await client.patch(WEBHOOKS, json=values, headers=tenant.auth)
    assert response.status == 200, await response.text()


async def local_tenant(dispatcher: Dispatcher, products_url: str) -> str:
    tenant_id, _ = await dispatcher.repository.create_tenant("Hostile shop")
    update = WebhookSettingsUpdate(
        products_url=products_url, timeout_seconds=TIMEOUT_SECONDS
    )
    await dispatcher.update_config(tenant_id, update)
    return tenant_id


# --- the products route -----------------------------------------------------


@by_name(HOSTILE)
async def test_products_route_answers_200(
    client: Any,
    tenant: TenantKeys,
    settings: Settings,
    start_raw: StartRaw,
    certificates: dict[str, ssl.SSLContext],
    hostile: Hostile,
) -> None:
    """The products route responds with 200, every SKU unavailable, within bounds."""
    server = await start_hostile(start_raw, certificates, hostile)
    await configure(client, tenant, products_url=server.url())
    body = {"store_id": "store-1", "products": [{"sku": sku} for sku in SKUS]}

    started = time.monotonic()
    with traced_peak() as memory:
        response = await client.post(
            f"/internal/v1/tenants/{tenant.tenant_id}/products/check",
            json=body,
            headers=INTERNAL_AUTH,
        )
        answer = await response.json()
    elapsed = time.monotonic() - started

    assert response.status == 200
    assert answer == {"products": [], "unavailable": unavailable(hostile.reason)}
    assert elapsed < worst_case_seconds(TIMEOUT_SECONDS, settings)
    assert memory.peak < MEMORY_PEAK_LIMIT_BYTES


# --- the in-process dispatcher ------------------------------------------------


async def test_raw_server_control(
    local_dispatcher: Dispatcher, start_raw: StartRaw
) -> None:
    """A well-behaved raw server prices SKU a, so the harness itself works."""
    server = await start_raw(priced_answer())
    tenant_id = await local_tenant(local_dispatcher, server.url())

    result = await local_dispatcher.check_products(tenant_id, check_request())

    assert [product["sku"] for product in result.products] == ["a"]


@by_name(HOSTILE)
async def test_dispatcher_never_raises(
    local_dispatcher: Dispatcher,
    start_raw: StartRaw,
    certificates: dict[str, ssl.SSLContext],
    hostile: Hostile,
) -> None:
    """check_products returns every SKU unavailable instead of raising."""
    server = await start_hostile(start_raw, certificates, hostile)
    tenant_id = await local_tenant(local_dispatcher, server.url())

    with traced_peak() as memory, capture_logs() as logs:
        result = await local_dispatcher.check_products(tenant_id, check_request())

    assert result.products == []
    assert result.model_dump(mode="json")["unavailable"] == unavailable(hostile.reason)
    assert failure_events(logs) == hostile.failure
    assert memory.peak < MEMORY_PEAK_LIMIT_BYTES


@by_name([hostile for hostile in HOSTILE if hostile.never_retried])
async def test_failure_not_retried(
    local_dispatcher: Dispatcher,
    start_raw: StartRaw,
    certificates: dict[str, ssl.SSLContext],
    hostile: Hostile,
) -> None:
    """Oversized or invalid bodies and TLS failures get no second attempt."""
    server = await start_hostile(start_raw, certificates, hostile)
    tenant_id = await local_tenant(local_dispatcher, server.url())

    await local_dispatcher.check_products(tenant_id, check_request())

    assert server.connections == 1


# --- the cart route ---------------------------------------------------------


@by_name(CART_HOSTILE)
async def test_cart_route_answers_not_ok(
    client: Any,
    tenant: TenantKeys,
    settings: Settings,
    start_raw: StartRaw,
    certificates: dict[str, ssl.SSLContext],
    hostile: Hostile,
) -> None:
    """The cart route responds with 200 with ok false and the failure reason."""
    server = await start_hostile(start_raw, certificates, hostile)
    await configure(client, tenant, cart_url=server.url("/cart"))
    operation = {
        "action": "add",
        "store_id": "store-1",
        "session_id": "user-1",
        "sku": "a",
        "name": "Milk",
        "quantity": 1,
        "price": 45.9,
    }

    started = time.monotonic()
    with traced_peak() as memory:
        response = await client.post(
            f"/internal/v1/tenants/{tenant.tenant_id}/cart",
            json=operation,
            headers=INTERNAL_AUTH,
        )
        answer = await response.json()
    elapsed = time.monotonic() - started

    assert response.status == 200
    assert answer == {"ok": False, "reason": hostile.reason}
    assert elapsed < worst_case_seconds(TIMEOUT_SECONDS, settings)
    assert memory.peak < MEMORY_PEAK_LIMIT_BYTES
