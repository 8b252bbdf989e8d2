"""Tests for the transport: signed HTTPS calls to real merchants on loopback.

Every server here listens on 127.0.0.1 with TLS. Merchants from `start_merchant`
record each request. Servers from the local `serve` fixture run a raw aiohttp
handler, for streamed responses and for certificates other than the test CA's.
The signature oracle below is written from the signing rules of the webhook
contract, not imported from dispatcher.signing.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from aiohttp import web
from structlog.testing import capture_logs

from dispatcher.errors import (
    BlockedAddress,
    WebhookConnectionError,
    WebhookInvalidResponse,
    WebhookStatusError,
    WebhookTimeout,
    WebhookTLSError,
)
from dispatcher.transport import Transport, WebhookCall

if TYPE_CHECKING:
    from tests.conftest import Merchant, RecordedRequest, Responder

    StartMerchant = Callable[[Responder | None], Awaitable[Merchant]]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[..., Awaitable[int]]
MakeTransport = Callable[..., Awaitable[Transport]]

SECRET = "whsec-test-0123456789abcdef-secret"
PRODUCTS_BODY = b'{"skus":["milk-001"],"store_id":"store-1"}'
# Compact UTF-8 JSON with Cyrillic and an emoji, as encode_body would produce it.
UNICODE_BODY = '{"skus":["молоко-001","🥛-2"],"store_id":"магазин-1"}'.encode()
ONE_MIB = 1024 * 1024
# Seconds the contract lets a receiver's clock differ from the signed timestamp.
SIGNATURE_TOLERANCE = 300


# --- helpers --------------------------------------------------------------


def make_call(
    url: str,
    *,
    body: bytes = PRODUCTS_BODY,
    timeout_seconds: float = 3.0,
    method: str = "POST",
) -> WebhookCall:
    return WebhookCall(
        tenant_id="tenant-1",
        webhook="products",
        method=method,  # type: ignore[arg-type]
        url=url,
        body=body,
        secret=SECRET,
        timeout_seconds=timeout_seconds,
    )


def header(request: RecordedRequest, name: str) -> str | None:
    """Return a request header by case-insensitive name, or None if absent."""
    lowered = {key.lower(): value for key, value in request.headers.items()}
    return lowered.get(name.lower())


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Sign as the contract specifies: HMAC-SHA256 over b"{timestamp}." + raw body."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_is_valid(secret: str, request: RecordedRequest) -> bool:
    """Verify a recorded request the way a merchant would, in constant time."""
    timestamp = header(request, "X-VIZOCHOK-Timestamp") or ""
    received = header(request, "X-VIZOCHOK-Signature") or ""
    expected = expected_signature(secret, timestamp, request.body)
    return hmac.compare_digest(expected.encode(), received.encode())


def reply_in_turn(*statuses: int, location: str | None = None) -> Responder:
    """Respond to the n-th request with the n-th status, repeating the last one."""
    pending = list(statuses)

    def respond(_request: RecordedRequest) -> web.StreamResponse:
        status = pending.pop(0) if len(pending) > 1 else pending[0]
        if 200 <= status < 300:
            return web.json_response({"products": []}, status=status)
        headers = {"Location": location} if location is not None else None
        return web.Response(status=status, headers=headers)

    return respond


def reply_body(body: bytes, headers: dict[str, str] | None = None) -> Responder:
    def respond(_request: RecordedRequest) -> web.StreamResponse:
        return web.Response(body=body, headers=headers)

    return respond


def unused_port() -> int:
    """Return a loopback port that nothing listens on (bound once, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def events_named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- fixtures -------------------------------------------------------------


@pytest.fixture
async def make_transport(
    make_settings: Callable[..., Any],
) -> AsyncIterator[MakeTransport]:
    """Start transports with settings overrides and close every one at teardown."""
    opened: list[Transport] = []

    async def open_transport(**overrides: Any) -> Transport:
        transport = Transport(make_settings(**overrides))
        await transport.start()
        opened.append(transport)
        return transport

    yield open_transport
    for transport in opened:
        await transport.close()


@pytest.fixture
async def transport(make_transport: MakeTransport) -> Transport:
    return await make_transport()


@pytest.fixture
async def serve(server_ssl: ssl.SSLContext) -> AsyncIterator[Serve]:
    """Start raw aiohttp HTTPS servers on 127.0.0.1 and return their ports."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext = server_ssl) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        runners.append(runner)
        port: int = runner.addresses[0][1]
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def release(
    start_merchant: StartMerchant, serve: Serve
) -> AsyncIterator[asyncio.Event]:
    """Event that hanging handlers wait on, set before the servers shut down."""
    event = asyncio.Event()
    yield event
    event.set()
    await asyncio.sleep(0)


@pytest.fixture
def other_ca() -> trustme.CA:
    """A certificate authority that the transport does not trust."""
    return trustme.CA()


def server_context(ca: trustme.CA, *identities: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(context)
    return context


# --- request shape and signature -------------------------------------------


async def test_post_sends_json_content_type(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A POST call carries Content-Type application/json."""
    merchant = await start_merchant(None)
    await transport.send(make_call(merchant.url()))
    [request] = merchant.requests
    assert request.method == "POST"
    assert header(request, "Content-Type") == "application/json"


async def test_timestamp_is_current_unix_seconds(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """X-VIZOCHOK-Timestamp is whole Unix seconds close to the current time."""
    merchant = await start_merchant(None)
    await transport.send(make_call(merchant.url()))
    timestamp = header(merchant.requests[0], "X-VIZOCHOK-Timestamp")
    assert timestamp is not None
    assert timestamp.isascii()
    assert timestamp.isdigit()
    assert abs(int(timestamp) - time.time()) <= SIGNATURE_TOLERANCE


async def test_signature_verifies_independently(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """X-VIZOCHOK-Signature is HMAC-SHA256 of "{timestamp}." plus the raw body."""
    merchant = await start_merchant(None)
    await transport.send(make_call(merchant.url(), body=UNICODE_BODY))
    [request] = merchant.requests
    assert header(request, "X-VIZOCHOK-Signature") is not None
    assert signature_is_valid(SECRET, request)


async def test_signature_fails_with_other_secret(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """The test oracle rejects the request under a different secret."""
    merchant = await start_merchant(None)
    await transport.send(make_call(merchant.url()))
    assert not signature_is_valid("another-secret-0123456789", merchant.requests[0])


async def test_request_id_header_is_call_id(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """X-VIZOCHOK-Request-Id carries the call's request id."""
    merchant = await start_merchant(None)
    call = make_call(merchant.url())
    await transport.send(call)
    assert header(merchant.requests[0], "X-VIZOCHOK-Request-Id") == call.request_id


async def test_user_agent_names_vizochok_webhooks(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """User-Agent starts with VIZOCHOK-Webhooks/."""
    merchant = await start_merchant(None)
    await transport.send(make_call(merchant.url()))
    user_agent = header(merchant.requests[0], "User-Agent")
    assert user_agent is not None
    assert user_agent.startswith("VIZOCHOK-Webhooks/")


async def test_body_bytes_arrive_unchanged(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """The merchant receives exactly call.body, Cyrillic and emoji included."""
    merchant = await start_merchant(None)
    call = make_call(merchant.url(), body=UNICODE_BODY)
    await transport.send(call)
    assert merchant.requests[0].body == call.body


async def test_success_returns_status_and_body(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A 200 on the first attempt returns its status, body and attempts == 1."""
    merchant = await start_merchant(reply_body(b'{"products":[]}'))
    response = await transport.send(make_call(merchant.url()))
    assert response.status_code == 200
    assert response.body == b'{"products":[]}'
    assert response.attempts == 1


async def test_get_sends_no_content_type(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A GET call is signed over an empty body and carries no Content-Type."""
    merchant = await start_merchant(reply_body(b'{"items":[]}'))
    await transport.send(make_call(merchant.url("/cart"), method="GET", body=b""))
    [request] = merchant.requests
    assert request.method == "GET"
    assert header(request, "Content-Type") is None
    assert signature_is_valid(SECRET, request)


# --- retry ----------------------------------------------------------------


async def test_500_then_200_succeeds_on_retry(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A 500 followed by a 200 succeeds on the second attempt."""
    merchant = await start_merchant(reply_in_turn(500, 200))
    response = await transport.send(make_call(merchant.url()))
    assert response.status_code == 200
    assert response.attempts == 2
    assert len(merchant.requests) == 2


async def test_retry_reuses_request_id(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Both attempts of one call carry the same X-VIZOCHOK-Request-Id."""
    merchant = await start_merchant(reply_in_turn(500, 200))
    call = make_call(merchant.url())
    await transport.send(call)
    first, second = merchant.requests
    assert header(first, "X-VIZOCHOK-Request-Id") == call.request_id
    assert header(second, "X-VIZOCHOK-Request-Id") == call.request_id


async def test_retry_signs_each_attempt_afresh(
    make_transport: MakeTransport, start_merchant: StartMerchant
) -> None:
    """After the 1 s wait the retry has a new timestamp and its own valid signature."""
    transport = await make_transport(retry_wait_seconds=1.0)
    merchant = await start_merchant(reply_in_turn(500, 200))
    await transport.send(make_call(merchant.url(), body=UNICODE_BODY))
    first, second = merchant.requests
    assert second.at - first.at >= 0.9
    assert header(first, "X-VIZOCHOK-Timestamp") != header(
        second, "X-VIZOCHOK-Timestamp"
    )
    assert signature_is_valid(SECRET, first)
    assert signature_is_valid(SECRET, second)
    assert second.body == first.body


async def test_500_twice_raises_status_error(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Two 500 responses raise WebhookStatusError(500) after exactly two requests."""
    merchant = await start_merchant(reply_in_turn(500))
    with pytest.raises(WebhookStatusError) as caught:
        await transport.send(make_call(merchant.url()))
    assert caught.value.status_code == 500
    assert len(merchant.requests) == 2


async def test_503_is_retried(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A 503 is retried like any 5xx."""
    merchant = await start_merchant(reply_in_turn(503, 200))
    response = await transport.send(make_call(merchant.url()))
    assert response.attempts == 2
    assert len(merchant.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 304])
async def test_non_5xx_failure_is_not_retried(
    transport: Transport, start_merchant: StartMerchant, status: int
) -> None:
    """A 4xx or 304 raises WebhookStatusError after a single request."""
    merchant = await start_merchant(reply_in_turn(status, 200))
    with pytest.raises(WebhookStatusError) as caught:
        await transport.send(make_call(merchant.url()))
    assert caught.value.status_code == status
    assert len(merchant.requests) == 1


@pytest.mark.parametrize("status", [301, 302])
async def test_redirect_is_not_followed(
    transport: Transport, start_merchant: StartMerchant, status: int
) -> None:
    """A 301 or 302 is a failure, and the Location target gets no request."""
    target = await start_merchant(None)
    merchant = await start_merchant(
        reply_in_turn(status, location=target.url("/elsewhere"))
    )
    with pytest.raises(WebhookStatusError) as caught:
        await transport.send(make_call(merchant.url()))
    assert caught.value.status_code == status
    assert len(merchant.requests) == 1
    assert target.requests == []


async def test_retry_false_sends_once_on_500(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """With retry=False a 500 raises after a single request."""
    merchant = await start_merchant(reply_in_turn(500, 200))
    with pytest.raises(WebhookStatusError):
        await transport.send(make_call(merchant.url()), retry=False)
    assert len(merchant.requests) == 1


# --- timeouts -------------------------------------------------------------


async def test_slow_handler_times_out_and_retries(
    transport: Transport, start_merchant: StartMerchant, release: asyncio.Event
) -> None:
    """A handler slower than the timeout raises WebhookTimeout after two requests."""

    async def respond(_request: RecordedRequest) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"products": []})

    merchant = await start_merchant(respond)
    started = time.monotonic()
    with pytest.raises(WebhookTimeout):
        await transport.send(make_call(merchant.url(), timeout_seconds=0.5))
    assert len(merchant.requests) == 2
    assert time.monotonic() - started < 5


async def test_trickled_body_times_out(transport: Transport, serve: Serve) -> None:
    """A body sent one byte per 0.1 s times out although bytes keep arriving."""
    requests = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        response = web.StreamResponse()
        response.content_length = 50
        await response.prepare(request)
        try:
            for _ in range(50):
                await response.write(b" ")
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        return response

    port = await serve(handler)
    started = time.monotonic()
    with pytest.raises(WebhookTimeout):
        await transport.send(
            make_call(f"https://127.0.0.1:{port}/", timeout_seconds=0.5)
        )
    assert requests == 2
    assert time.monotonic() - started < 5


async def test_headers_then_hang_times_out(
    transport: Transport, serve: Serve, release: asyncio.Event
) -> None:
    """Headers followed by silence raise WebhookTimeout."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 20
        await response.prepare(request)
        await release.wait()
        return response

    port = await serve(handler)
    started = time.monotonic()
    with pytest.raises(WebhookTimeout):
        await transport.send(
            make_call(f"https://127.0.0.1:{port}/", timeout_seconds=0.5)
        )
    assert time.monotonic() - started < 5


# --- connection failures --------------------------------------------------


async def test_refused_port_raises_connection_error(
    make_transport: MakeTransport,
) -> None:
    """Nothing listening raises WebhookConnectionError after the retry wait."""
    transport = await make_transport(retry_wait_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(WebhookConnectionError):
        await transport.send(make_call(f"https://127.0.0.1:{unused_port()}/"))
    assert time.monotonic() - started >= 0.3


async def test_refused_port_is_attempted_twice(transport: Transport) -> None:
    """A refused connection is retried once, as the attempt log shows."""
    with capture_logs() as logs, pytest.raises(WebhookConnectionError):
        await transport.send(make_call(f"https://127.0.0.1:{unused_port()}/"))
    assert len(events_named(logs, "webhook.attempt_failed")) == 2


async def test_immediate_close_raises_connection_error(transport: Transport) -> None:
    """A server that accepts TCP and closes at once is a retried connection error."""
    connections = 0

    async def close_at_once(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(WebhookConnectionError):
            await transport.send(make_call(f"https://127.0.0.1:{port}/"))
    finally:
        server.close()
        await server.wait_closed()
    assert connections == 2


async def test_drop_mid_body_is_not_retried(transport: Transport, serve: Serve) -> None:
    """A connection lost after the headers is a connection error without a retry."""
    requests = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        response = web.StreamResponse()
        response.content_length = 100
        await response.prepare(request)
        await response.write(b"x" * 10)
        assert request.transport is not None
        request.transport.abort()
        return response

    port = await serve(handler)
    with pytest.raises(WebhookConnectionError):
        await transport.send(make_call(f"https://127.0.0.1:{port}/"))
    assert requests == 1


# --- TLS ------------------------------------------------------------------


async def test_untrusted_ca_raises_tls_error(
    transport: Transport, serve: Serve, other_ca: trustme.CA
) -> None:
    """A certificate from an untrusted CA raises WebhookTLSError on one attempt."""
    handled = 0

    async def handler(_request: web.Request) -> web.StreamResponse:
        nonlocal handled
        handled += 1
        return web.json_response({"products": []})

    port = await serve(handler, server_context(other_ca, "127.0.0.1"))
    with capture_logs() as logs, pytest.raises(WebhookTLSError):
        await transport.send(make_call(f"https://127.0.0.1:{port}/"))
    assert handled == 0
    assert len(events_named(logs, "webhook.attempt_failed")) == 1
    assert events_named(logs, "webhook.retry_scheduled") == []


async def test_wrong_name_certificate_raises_tls_error(
    transport: Transport, serve: Serve, ca: trustme.CA
) -> None:
    """A trusted certificate for other.test only, not 127.0.0.1, is rejected."""
    handled = 0

    async def handler(_request: web.Request) -> web.StreamResponse:
        nonlocal handled
        handled += 1
        return web.json_response({"products": []})

    port = await serve(handler, server_context(ca, "other.test"))
    with capture_logs() as logs, pytest.raises(WebhookTLSError):
        await transport.send(make_call(f"https://127.0.0.1:{port}/"))
    assert handled == 0
    assert len(events_named(logs, "webhook.attempt_failed")) == 1


# --- response body cap ----------------------------------------------------


async def test_body_of_exactly_1_mib_is_accepted(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A body of exactly 1048576 bytes is returned in full."""
    merchant = await start_merchant(reply_body(b"x" * ONE_MIB))
    response = await transport.send(make_call(merchant.url()))
    assert len(response.body) == ONE_MIB


async def test_body_over_1_mib_is_rejected(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A body of 1 MiB + 1 raises WebhookInvalidResponse and is not retried."""
    merchant = await start_merchant(reply_body(b"x" * (ONE_MIB + 1)))
    with pytest.raises(WebhookInvalidResponse):
        await transport.send(make_call(merchant.url()))
    assert len(merchant.requests) == 1


async def test_huge_declared_length_is_rejected(
    transport: Transport, serve: Serve, release: asyncio.Event
) -> None:
    """A declared Content-Length over the cap is rejected before the body arrives."""
    requests = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        response = web.StreamResponse()
        response.content_length = 10**12
        await response.prepare(request)
        await response.write(b"x" * 1024)
        await release.wait()
        return response

    port = await serve(handler)
    with pytest.raises(WebhookInvalidResponse):
        await transport.send(
            make_call(f"https://127.0.0.1:{port}/", timeout_seconds=3.0)
        )
    assert requests == 1


async def test_gzip_body_is_decompressed(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A gzip body that inflates to 1 MiB is returned decompressed."""
    compressed = gzip.compress(b"\0" * ONE_MIB)
    merchant = await start_merchant(
        reply_body(compressed, {"Content-Encoding": "gzip"})
    )
    response = await transport.send(make_call(merchant.url()))
    assert response.body == b"\0" * ONE_MIB


async def test_gzip_bomb_is_rejected(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A small gzip body that inflates past 1 MiB is rejected and not retried."""
    compressed = gzip.compress(b"\0" * (8 * ONE_MIB))
    assert len(compressed) < 64 * 1024
    merchant = await start_merchant(
        reply_body(compressed, {"Content-Encoding": "gzip"})
    )
    with pytest.raises(WebhookInvalidResponse):
        await transport.send(make_call(merchant.url()))
    assert len(merchant.requests) == 1


# --- blocked addresses at send time ---------------------------------------


# Spellings of 127.0.0.1: dotted quad, one 32-bit number, IPv4-mapped IPv6, and
# the hex, short and octal forms that inet_aton accepts.
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "[::ffff:127.0.0.1]",
    "0x7f.1",
    "127.1",
    "0177.0.0.1",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_loopback_blocked_without_exemption(
    make_transport: MakeTransport, start_merchant: StartMerchant, host: str
) -> None:
    """Without the loopback exemption any spelling of 127.0.0.1 is BlockedAddress."""
    transport = await make_transport(allow_private_networks=())
    merchant = await start_merchant(None)
    with capture_logs() as logs, pytest.raises(BlockedAddress):
        await transport.send(make_call(f"https://{host}:{merchant.port}/products"))
    assert merchant.requests == []
    assert len(events_named(logs, "webhook.attempt_failed")) == 1
    assert events_named(logs, "webhook.retry_scheduled") == []


async def test_name_resolving_to_loopback_is_blocked(
    make_transport: MakeTransport, start_merchant: StartMerchant
) -> None:
    """A host name that resolves to loopback is rejected by the connect-time check."""
    transport = await make_transport(allow_private_networks=())
    merchant = await start_merchant(None)
    with pytest.raises(BlockedAddress):
        await transport.send(make_call(f"https://localhost:{merchant.port}/products"))
    assert merchant.requests == []


# --- logging --------------------------------------------------------------

SECRET_PATH_URL = "/hook/path-token?key=query-token"


async def test_retry_logs_attempt_failed(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A retried 500 logs webhook.attempt_failed with the call's identifiers."""
    merchant = await start_merchant(reply_in_turn(500, 200))
    with capture_logs() as logs:
        await transport.send(make_call(merchant.url(SECRET_PATH_URL)))
    [failed] = events_named(logs, "webhook.attempt_failed")
    assert failed["tenant_id"] == "tenant-1"
    assert failed["webhook"] == "products"
    assert failed["host"] == f"127.0.0.1:{merchant.port}"
    assert failed["status_code"] == 500
    assert isinstance(failed["elapsed_ms"], int)


async def test_retry_logs_retry_scheduled(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A retried 500 logs webhook.retry_scheduled with the call's identifiers."""
    merchant = await start_merchant(reply_in_turn(500, 200))
    with capture_logs() as logs:
        await transport.send(make_call(merchant.url(SECRET_PATH_URL)))
    [scheduled] = events_named(logs, "webhook.retry_scheduled")
    assert scheduled["tenant_id"] == "tenant-1"
    assert scheduled["webhook"] == "products"
    assert scheduled["host"] == f"127.0.0.1:{merchant.port}"


async def test_logs_omit_secrets_body_and_path(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """No logged event contains the secret, a signature, the body or path/query."""
    merchant = await start_merchant(reply_in_turn(500))
    body = json.dumps({"skus": ["body-marker-сир"]}, ensure_ascii=False).encode()
    with capture_logs() as logs, pytest.raises(WebhookStatusError):
        await transport.send(make_call(merchant.url(SECRET_PATH_URL), body=body))
    logged = repr(logs)
    signatures = [
        header(request, "X-VIZOCHOK-Signature") for request in merchant.requests
    ]
    assert events_named(logs, "webhook.failed") != []
    assert SECRET not in logged
    for signature in signatures:
        assert signature is not None
        assert signature.removeprefix("sha256=") not in logged
    assert "body-marker" not in logged
    assert "path-token" not in logged
    assert "query-token" not in logged
