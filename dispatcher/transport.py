"""Signed HTTP calls to merchants: one pooled session, timeouts, one retry.

The call path is layered, and each layer adds one concern:

- `Transport.send`: the circuit breaker and the final failure log;
- `_send_with_retry`: the delivery rules' single retry;
- `_send_signed`: a fresh timestamp and signature, and the attempt log;
- `_send_once`: the HTTP exchange under the tenant's timeout. Every aiohttp and
  asyncio exception is translated into `dispatcher.errors` here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_fixed,
)
from yarl import URL

from dispatcher.bulkheads import Bulkheads
from dispatcher.circuit import CircuitBreakers, CircuitSettings
from dispatcher.errors import (
    CircuitOpen,
    DispatcherError,
    WebhookConnectionError,
    WebhookError,
    WebhookInvalidResponse,
    WebhookStatusError,
    WebhookTimeout,
    WebhookTLSError,
)
from dispatcher.settings import Settings
from dispatcher.signing import REQUEST_ID_HEADER, signature_headers
from dispatcher.urlpolicy import GuardedResolver, check_ip_literal

log = structlog.get_logger("dispatcher.transport")

WebhookKind = Literal["products", "cart", "cart_get"]
WEBHOOK_KINDS: tuple[WebhookKind, ...] = ("products", "cart", "cart_get")

# Response bodies larger than this after decompression are a failure. A products
# response for ten SKUs is a few kilobytes; the cap keeps a hostile merchant from
# making the platform buffer an unbounded body.
MAX_RESPONSE_BYTES = 1024 * 1024
_READ_CHUNK_BYTES = 64 * 1024

# The contract allows exactly one retry.
MAX_ATTEMPTS = 2

try:
    _VERSION = version("vizochok-dispatcher")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0"
USER_AGENT = f"VIZOCHOK-Webhooks/{_VERSION}"


@dataclass(frozen=True)
class WebhookCall:
    """One logical call to a merchant; its retry reuses the same body and id."""

    tenant_id: str
    webhook: WebhookKind
    method: Literal["GET", "POST"]
    url: str
    body: bytes
    secret: str = field(repr=False)
    timeout_seconds: float
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @cached_property
    def host(self) -> str:
        """Host and port of the URL, the only part of it that may be logged."""
        return urlsplit(self.url).netloc.rpartition("@")[2]

    @cached_property
    def raw_host(self) -> str:
        """The host as aiohttp connects to it (IPv6 without brackets)."""
        return URL(self.url).raw_host or ""


@dataclass(frozen=True)
class WebhookResponse:
    """A 2xx response, with the body read in full (at most MAX_RESPONSE_BYTES)."""

    status_code: int
    body: bytes
    elapsed_ms: int
    attempts: int


class Transport:
    """Owns the process's single pooled aiohttp client session."""

    def __init__(
        self, settings: Settings, resolver: AbstractResolver | None = None
    ) -> None:
        self._settings = settings
        self._policy = settings.address_policy
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self.bulkheads = Bulkheads(
            settings.max_concurrent_per_host, settings.max_concurrent_per_tenant
        )
        self.circuits = CircuitBreakers(
            CircuitSettings(
                failure_threshold=settings.circuit_failure_threshold,
                window_seconds=settings.circuit_window_seconds,
                cooldown_seconds=settings.circuit_cooldown_seconds,
            )
        )

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._policy, self._resolver),
            ssl=self._ssl_context(),
            # A ceiling on open sockets; fairness between merchants and tenants
            # comes from the bulkheads, which are far below it per host.
            limit=1000,
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The tenant timeout is applied per attempt in _send_once instead.
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self._settings.extra_ca_file is not None:
            context.load_verify_locations(cafile=str(self._settings.extra_ca_file))
        return context

    async def send(
        self, call: WebhookCall, *, retry: bool = True, use_circuit: bool = True
    ) -> WebhookResponse:
        """Deliver `call` under the delivery rules and return its 2xx response.

        Raises a WebhookError subclass when every allowed attempt failed, and
        CircuitOpen without sending when the tenant webhook's circuit is open.
        `use_circuit=False` (the admin probe) sends regardless and leaves the
        circuit as it is.
        """
        key = (call.tenant_id, call.webhook)
        if use_circuit and not self.circuits.allow(key):
            raise CircuitOpen(f"circuit open for {call.webhook}; call not sent")

        started = time.monotonic()
        failures: list[str] = []
        try:
            response = await self._send_with_retry(call, retry=retry, failures=failures)
        except WebhookError as exc:
            exc.attempt_codes = tuple(failures)
            if use_circuit:
                self.circuits.record_failure(key)
            log.warning(
                "webhook.failed",
                tenant_id=call.tenant_id,
                webhook=call.webhook,
                host=call.host,
                request_id=call.request_id,
                error=exc.code,
                status_code=exc.status_code,
                elapsed_ms=_elapsed_ms(started),
            )
            raise
        except BaseException:
            # Cancelled (the chat request went away): no verdict on the merchant.
            if use_circuit:
                self.circuits.release_probe(key)
            raise
        if use_circuit:
            self.circuits.record_success(key)
        return response

    async def _send_with_retry(
        self, call: WebhookCall, *, retry: bool, failures: list[str]
    ) -> WebhookResponse:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(MAX_ATTEMPTS if retry else 1),
            wait=wait_fixed(self._settings.retry_wait_seconds),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
            before_sleep=lambda state: _log_retry(call, state),
        )
        response: WebhookResponse | None = None
        async for attempt in retrying:
            with attempt:
                response = await self._send_signed(
                    call, attempt.retry_state.attempt_number, failures
                )
        assert response is not None  # AsyncRetrying either returned or raised
        return response

    async def _send_signed(
        self, call: WebhookCall, attempt: int, failures: list[str]
    ) -> WebhookResponse:
        headers = {
            REQUEST_ID_HEADER: call.request_id,
            **signature_headers(call.secret, call.body),
        }
        if call.method == "POST":
            headers["Content-Type"] = "application/json"

        started = time.monotonic()
        try:
            status, body = await self._send_once(call, headers)
        except WebhookError as exc:
            failures.append(exc.code)
            log.warning(
                "webhook.attempt_failed",
                tenant_id=call.tenant_id,
                webhook=call.webhook,
                host=call.host,
                request_id=call.request_id,
                attempt=attempt,
                error=exc.code,
                status_code=exc.status_code,
                elapsed_ms=_elapsed_ms(started),
            )
            raise
        elapsed = _elapsed_ms(started)
        log.debug(
            "webhook.delivered",
            tenant_id=call.tenant_id,
            webhook=call.webhook,
            host=call.host,
            request_id=call.request_id,
            attempt=attempt,
            status_code=status,
            elapsed_ms=elapsed,
        )
        return WebhookResponse(status, body, elapsed, attempt)

    async def _send_once(
        self, call: WebhookCall, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("Transport.start() must be awaited before send()")
        check_ip_literal(self._policy, call.raw_host)
        slot_taken = response_started = False
        try:
            # One deadline covers the wait for a bulkhead slot, name resolution,
            # connect, TLS, headers and the whole body.
            async with (
                asyncio.timeout(call.timeout_seconds),
                self.bulkheads.slot(call.tenant_id, call.host),
            ):
                slot_taken = True
                async with self._session.request(
                    call.method,
                    call.url,
                    data=call.body if call.method == "POST" else None,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    response_started = True
                    if not 200 <= response.status < 300:
                        raise WebhookStatusError(response.status)
                    try:
                        body = await _read_capped(response)
                    except WebhookInvalidResponse as exc:
                        exc.status_code = response.status
                        raise
                    return response.status, body
        except DispatcherError:
            raise
        except TimeoutError as exc:
            if not slot_taken:
                raise WebhookTimeout(
                    f"no free slot for {call.host} within {call.timeout_seconds} s; "
                    "the call was not sent"
                ) from exc
            raise WebhookTimeout(
                f"no complete response within {call.timeout_seconds} s"
            ) from exc
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise WebhookTLSError(f"TLS failed for {call.host}: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            # Raised while parsing the status line or headers (malformed, too long).
            # The message quotes the merchant's bytes, so only the type is kept.
            raise WebhookInvalidResponse(
                f"malformed HTTP response ({type(exc).__name__})"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Before any response the request was not processed for sure, so it may
            # be retried; a failure mid-body might follow a processed cart change.
            raise WebhookConnectionError(
                f"connection to {call.host} failed: {type(exc).__name__}",
                retryable=not response_started,
            ) from exc


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    declared = response.content_length
    if (
        encoding == "identity"
        and declared is not None
        and declared > MAX_RESPONSE_BYTES
    ):
        raise WebhookInvalidResponse(
            f"body of {declared} bytes declared, over the {MAX_RESPONSE_BYTES}-byte cap"
        )

    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise WebhookInvalidResponse(
                f"body exceeds the {MAX_RESPONSE_BYTES}-byte cap after decompression"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, WebhookError) and exc.retryable


def _log_retry(call: WebhookCall, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "webhook.retry_scheduled",
        tenant_id=call.tenant_id,
        webhook=call.webhook,
        host=call.host,
        request_id=call.request_id,
        attempt=state.attempt_number,
        error=exc.code if isinstance(exc, WebhookError) else None,
        wait_ms=int((state.upcoming_sleep or 0) * 1000),
    )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
