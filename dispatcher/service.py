"""The dispatcher as the rest of the platform uses it, in-process or over HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import structlog
from aiohttp.abc import AbstractResolver

from dispatcher.cart import CartOperation, SessionStartRequest, parse_cart_get
from dispatcher.circuit import CircuitState
from dispatcher.configcache import ConfigCache
from dispatcher.errors import (
    WebhookError,
    WebhookInvalidResponse,
    WebhookNotConfigured,
)
from dispatcher.products import (
    PricedProduct,
    ProductsCheckRequest,
    ProductsCheckResult,
    check_products,
    parse_products_response,
    products_call,
)
from dispatcher.sessions import (
    CartResult,
    SessionCartView,
    apply_cart_operation,
    cart_get_call,
    start_session,
)
from dispatcher.settings import Settings
from dispatcher.storage.carts import CartStore
from dispatcher.storage.database import create_engine
from dispatcher.storage.notify import ConfigChangeListener
from dispatcher.storage.repository import ConfigUpdate, Repository, TenantConfig
from dispatcher.storage.secrets import load_secret_box
from dispatcher.transport import WEBHOOK_KINDS, Transport, WebhookCall
from dispatcher.webhook_settings import WebhookSettingsUpdate, validate_update

log = structlog.get_logger("dispatcher.service")

ProbeTarget = Literal["products", "cart_get"]
# The probe's request is recognisably synthetic, so merchants can ignore it.
PROBE_SKUS = ("vizochok-test-1", "vizochok-test-2")
PROBE_STORE_ID = "vizochok-test"
PROBE_SESSION_ID = "vizochok-test"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status_code: int | None
    response_time_ms: int
    error: str | None = None


class Dispatcher:
    """Tenant settings, the config cache and the transport, wired together.

    Build it with `Dispatcher.create(settings)`, then `await start()` before use
    and `await close()` at shutdown.
    """

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository
        # One resolver for save-time and connect-time checks; None means the
        # system resolver (getaddrinfo in a thread).
        self.resolver = resolver
        self.transport = Transport(settings, resolver)
        self.configs = ConfigCache(repository, settings.config_cache_ttl_seconds)
        self.carts = CartStore(repository.engine)
        self.listener: ConfigChangeListener | None = None
        if not settings.is_sqlite:
            self.listener = ConfigChangeListener(
                settings.database_url, self.configs.invalidate, self.configs.clear
            )

    @classmethod
    def create(
        cls, settings: Settings, resolver: AbstractResolver | None = None
    ) -> Dispatcher:
        engine = create_engine(settings.database_url)
        return cls(settings, Repository(engine, load_secret_box(settings)), resolver)

    async def start(self) -> None:
        await self.transport.start()
        if self.listener is not None:
            self.listener.start()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        await self.transport.close()
        await self.repository.dispose()

    async def check_products(
        self, tenant_id: str, request: ProductsCheckRequest
    ) -> ProductsCheckResult:
        """Price and filter search results for a tenant.

        Raises TenantNotFound for an unknown tenant; merchant failures become
        unavailable products, never exceptions.
        """
        config = await self.configs.get(tenant_id)
        return await check_products(
            self.transport,
            config,
            request,
            batch_size=self.settings.max_skus_per_request,
        )

    async def apply_cart_operation(
        self, tenant_id: str, operation: CartOperation
    ) -> CartResult:
        """Apply one cart operation; operations on one session run in order."""
        config = await self.configs.get(tenant_id)
        return await apply_cart_operation(self.transport, self.carts, config, operation)

    async def start_session(
        self, tenant_id: str, request: SessionStartRequest
    ) -> SessionCartView:
        """Start a session, seeding its cart from the merchant when configured."""
        config = await self.configs.get(tenant_id)
        return await start_session(self.transport, self.carts, config, request)

    async def session_cart(
        self, tenant_id: str, store_id: str, session_id: str
    ) -> SessionCartView | None:
        """Return the platform's copy of a session cart, None if there is none."""
        await self.configs.get(tenant_id)  # raises TenantNotFound
        items = await self.carts.read((tenant_id, store_id, session_id))
        return None if items is None else SessionCartView(items=items)

    async def get_config(self, tenant_id: str) -> TenantConfig:
        return await self.configs.get(tenant_id)

    def circuit_states(self, tenant_id: str) -> dict[str, CircuitState]:
        """Return this instance's circuit state for each of the tenant's webhooks."""
        circuits = self.transport.circuits
        return {kind: circuits.state((tenant_id, kind)) for kind in WEBHOOK_KINDS}

    async def update_config(
        self, tenant_id: str, update: WebhookSettingsUpdate
    ) -> ConfigUpdate:
        """Validate and store a partial update, all or nothing."""
        values, secret = await validate_update(
            update, self.settings.address_policy, self.resolver
        )
        try:
            result = await self.repository.update_config(tenant_id, values, secret)
        finally:
            self.configs.invalidate(tenant_id)
        log.info(
            "admin.webhooks_updated",
            tenant_id=tenant_id,
            fields=sorted([*values, *(["secret"] if secret else [])]),
            secret_generated=result.generated_secret is not None,
        )
        return result

    async def rotate_secret(self, tenant_id: str) -> str:
        try:
            secret = await self.repository.rotate_secret(tenant_id)
        finally:
            self.configs.invalidate(tenant_id)
        log.info("admin.secret_rotated", tenant_id=tenant_id)
        return secret

    async def probe(self, tenant_id: str, target: ProbeTarget) -> ProbeResult:
        """Send one signed test request, without retry, and report the outcome.

        Raises WebhookNotConfigured when the webhook has no URL.
        """
        config = await self.configs.get(tenant_id)
        call = _probe_call(config, target)
        started = time.monotonic()
        try:
            response = await self.transport.send(call, retry=False, use_circuit=False)
        except WebhookError as exc:
            return ProbeResult(False, exc.status_code, _elapsed_ms(started), exc.code)

        try:
            _check_probe_body(target, response.body)
        except WebhookInvalidResponse as exc:
            return ProbeResult(
                False, response.status_code, response.elapsed_ms, exc.code
            )

        # The admin fixed or checked the merchant: calls may flow again at once.
        self.transport.circuits.reset((tenant_id, target))
        return ProbeResult(True, response.status_code, response.elapsed_ms)


def _probe_call(config: TenantConfig, target: ProbeTarget) -> WebhookCall:
    url = config.products_url if target == "products" else config.cart_get_url
    field = "products_url" if target == "products" else "cart_get_url"
    if not url or config.secret is None:
        raise WebhookNotConfigured(
            f"{field} is not configured; set it with PATCH /api/v1/admin/webhooks"
        )
    if target == "products":
        return products_call(config, PROBE_STORE_ID, list(PROBE_SKUS))
    return cart_get_call(config, PROBE_STORE_ID, PROBE_SESSION_ID)


def _check_probe_body(target: ProbeTarget, body: bytes) -> None:
    if target == "products":
        entries = parse_products_response(body, set(PROBE_SKUS))
        # Checks would mark every such SKU invalid_entry, so the probe fails too.
        if not all(isinstance(entry, PricedProduct) for entry in entries.values()):
            raise WebhookInvalidResponse("an entry for a probe SKU is invalid")
        return
    parse_cart_get(body)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
