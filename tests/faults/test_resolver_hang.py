"""A name resolver that never returns must cost a call no more than its timeout.

The resolver here returns addresses from a table like StaticResolver, but any
name in `hanging` makes resolve() sleep for an hour. The tenant's timeout covers
name resolution at send time; saving a URL has its own fixed resolution bound.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.test_utils import TestClient, TestServer

from admin_api.app import create_app
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from dispatcher.urlpolicy import SAVE_RESOLVE_TIMEOUT_SECONDS
from tests.conftest import INTERNAL_AUTH, Merchant, StaticResolver, TenantKeys
from tests.faults.conftest import SLACK_SECONDS, worst_case_seconds

WEBHOOKS = "/api/v1/admin/webhooks"
TIMEOUT_SECONDS = 1.0
# The test CA's merchant certificate covers this name, so once it resolves the
# call succeeds, and a failure can only come from the hanging resolution.
MERCHANT_NAME = "merchant.test"
HANG_SECONDS = 3600


class HangingResolver(StaticResolver):
    """A table resolver whose names in `hanging` never resolve."""

    def __init__(self) -> None:
        super().__init__({MERCHANT_NAME: ["127.0.0.1"]})
        self.hanging: set[str] = set()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host in self.hanging:
            await asyncio.sleep(HANG_SECONDS)
        return await super().resolve(host, port, family)


@pytest.fixture
def hanging_resolver() -> HangingResolver:
    return HangingResolver()


@pytest.fixture
def hang_settings(
    make_settings: Callable[..., Settings], database_url: str
) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def hang_dispatcher(
    hang_settings: Settings, hanging_resolver: HangingResolver
) -> Dispatcher:
    """Return a dispatcher using the hanging resolver; hang_client starts it."""
    return Dispatcher.create(hang_settings, hanging_resolver)


@pytest.fixture
async def hang_client(
    hang_settings: Settings, hang_dispatcher: Dispatcher
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(hang_settings, hang_dispatcher)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def hang_tenant(hang_client: Any, hang_dispatcher: Dispatcher) -> TenantKeys:
    tenant_id, api_key = await hang_dispatcher.repository.create_tenant("Hang shop")
    return TenantKeys(tenant_id, api_key)


def merchant_url(merchant: Merchant) -> str:
    return f"https://{MERCHANT_NAME}:{merchant.port}/products"


def priced(_request: Any) -> web.Response:
    return web.json_response({"products": [{"sku": "a", "price": 1, "in_stock": True}]})


async def check(client: Any, tenant: TenantKeys) -> tuple[int, Any]:
    response = await client.post(
        f"/internal/v1/tenants/{tenant.tenant_id}/products/check",
        json={"store_id": "store-1", "products": [{"sku": "a"}]},
        headers=INTERNAL_AUTH,
    )
    return response.status, await response.json()


async def save_products_url(client: Any, tenant: TenantKeys, url: str) -> Any:
    return await client.patch(
        WEBHOOKS,
        json={"products_url": url, "timeout_seconds": TIMEOUT_SECONDS},
        headers=tenant.auth,
    )


async def test_resolvable_name_prices_sku(
    hang_client: Any, hang_tenant: TenantKeys, start_merchant: Any
) -> None:
    """Before it hangs, the merchant's name resolves and SKU a is priced."""
    merchant = await start_merchant(priced)
    saved = await save_products_url(hang_client, hang_tenant, merchant_url(merchant))
    assert saved.status == 200, await saved.text()

    status, answer = await check(hang_client, hang_tenant)

    assert status == 200
    assert [product["sku"] for product in answer["products"]] == ["a"]


async def test_hanging_resolution_times_out(
    hang_client: Any,
    hang_tenant: TenantKeys,
    hang_settings: Settings,
    hanging_resolver: HangingResolver,
    start_merchant: Any,
) -> None:
    """A stored name that stops resolving makes the SKU webhook_timeout in time."""
    merchant = await start_merchant(priced)
    saved = await save_products_url(hang_client, hang_tenant, merchant_url(merchant))
    assert saved.status == 200, await saved.text()
    hanging_resolver.hanging.add(MERCHANT_NAME)

    started = time.monotonic()
    status, answer = await check(hang_client, hang_tenant)
    elapsed = time.monotonic() - started

    assert status == 200
    assert answer["unavailable"] == [{"sku": "a", "reason": "webhook_timeout"}]
    assert elapsed < worst_case_seconds(TIMEOUT_SECONDS, hang_settings)
    assert merchant.requests == []


async def test_hanging_name_rejected_on_save(
    hang_client: Any, hang_tenant: TenantKeys, hanging_resolver: HangingResolver
) -> None:
    """Saving a URL whose name never resolves is 422 url_unresolvable in time."""
    hanging_resolver.hanging.add("hang.test")

    started = time.monotonic()
    response = await save_products_url(
        hang_client, hang_tenant, "https://hang.test/products"
    )
    elapsed = time.monotonic() - started
    body = await response.json()

    assert response.status == 422
    assert [(item["loc"], item["type"]) for item in body["detail"]] == [
        (["body", "products_url"], "url_unresolvable")
    ]
    assert elapsed < SAVE_RESOLVE_TIMEOUT_SECONDS + SLACK_SECONDS
