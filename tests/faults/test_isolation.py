"""One tenant's hanging or failing merchant must not hurt other tenants."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from admin_api.app import create_app
from admin_api.keys import DISPATCHER
from dispatcher.cart import AddItem
from dispatcher.products import ProductsCheckRequest
from dispatcher.service import Dispatcher
from dispatcher.webhook_settings import WebhookSettingsUpdate
from tests.conftest import INTERNAL_AUTH

HANG_TIMEOUT_SECONDS = 2.0


@pytest.fixture
async def release() -> AsyncIterator[asyncio.Event]:
    """An event hanging handlers wait on; set at teardown so servers stop quickly."""
    event = asyncio.Event()
    yield event
    event.set()


def pricing(request: Any) -> web.Response:
    skus = json.loads(request.body)["skus"]
    return web.json_response(
        {"products": [{"sku": sku, "price": 10.5, "in_stock": True} for sku in skus]}
    )


def check(*skus: str) -> ProductsCheckRequest:
    return ProductsCheckRequest.model_validate(
        {"store_id": "s", "products": [{"sku": sku} for sku in skus]}
    )


async def new_tenant(dispatcher: Dispatcher, url: str, timeout_seconds: float) -> str:
    tenant_id, _ = await dispatcher.repository.create_tenant("shop")
    update = WebhookSettingsUpdate(products_url=url, timeout_seconds=timeout_seconds)
    await dispatcher.update_config(tenant_id, update)
    return tenant_id


async def test_hanging_tenant_does_not_delay_other(dispatcher, start_merchant, release):
    """B's calls return real prices while A's 200 calls hang, before any A finishes."""

    async def hang(_request: Any) -> web.Response:
        await release.wait()
        return web.json_response({"products": []})

    hanging = await start_merchant(hang)
    healthy = await start_merchant(pricing)
    tenant_a = await new_tenant(dispatcher, hanging.url(), HANG_TIMEOUT_SECONDS)
    tenant_b = await new_tenant(dispatcher, healthy.url(), 5.0)
    loop = asyncio.get_running_loop()
    a_finished: list[float] = []
    b_finished: list[float] = []

    async def call_a(index: int) -> Any:
        result = await dispatcher.check_products(tenant_a, check(f"a-{index}"))
        a_finished.append(loop.time())
        return result

    async def call_b(index: int) -> Any:
        result = await dispatcher.check_products(tenant_b, check(f"b-{index}"))
        b_finished.append(loop.time())
        return result

    a_tasks = [asyncio.create_task(call_a(i)) for i in range(200)]
    await asyncio.sleep(0.2)  # let A's calls occupy their slots and connections
    b_results = await asyncio.gather(*(call_b(i) for i in range(50)))
    a_results = await asyncio.gather(*a_tasks)

    assert all(result.products[0]["price"] == 10.5 for result in b_results)
    assert max(b_finished) < min(a_finished)
    assert all(
        result.unavailable[0].reason == "webhook_timeout" for result in a_results
    )


async def test_no_slot_in_time_is_not_sent(
    make_settings, sqlite_url, resolver, start_merchant, release
):
    """A call that cannot get a host slot within its timeout fails unsent."""

    async def hang(_request: Any) -> web.Response:
        await release.wait()
        return web.json_response({"products": []})

    settings = make_settings(database_url=sqlite_url, max_concurrent_per_host=1)
    dispatcher = Dispatcher.create(settings, resolver)
    await dispatcher.start()
    try:
        merchant = await start_merchant(hang)
        # Two tenants share the merchant host: the slow one holds its only slot.
        holder = await new_tenant(dispatcher, merchant.url(), 5.0)
        waiter = await new_tenant(dispatcher, merchant.url(), 0.5)
        holding = asyncio.create_task(dispatcher.check_products(holder, check("a")))
        await asyncio.sleep(0.1)
        result = await dispatcher.check_products(waiter, check("b"))
        release.set()
        await holding
    finally:
        await dispatcher.close()

    sent = [json.loads(request.body)["skus"] for request in merchant.requests]
    assert result.unavailable[0].reason == "webhook_timeout"
    assert sent == [["a"]]


async def test_circuit_opens_and_probe_closes(
    make_settings, database_url, resolver, start_merchant
):
    """Failures open the circuit; a successful admin probe closes it."""
    failing = True

    def respond(request: Any) -> web.Response:
        return web.Response(status=500) if failing else pricing(request)

    merchant = await start_merchant(respond)
    settings = make_settings(
        database_url=database_url,
        circuit_failure_threshold=3,
        circuit_cooldown_seconds=3600,
    )
    app = create_app(settings, Dispatcher.create(settings, resolver))
    async with TestClient(TestServer(app)) as client:
        dispatcher = app[DISPATCHER]
        tenant_id, key = await dispatcher.repository.create_tenant("shop")
        auth = {"Authorization": f"Bearer {key}"}
        await client.patch(
            "/api/v1/admin/webhooks",
            json={"products_url": merchant.url()},
            headers=auth,
        )
        path = f"/internal/v1/tenants/{tenant_id}/products/check"
        body = {"store_id": "s", "products": [{"sku": "a"}]}

        for _ in range(3):
            await client.post(path, json=body, headers=INTERNAL_AUTH)
        sent_before = len(merchant.requests)
        rejected = await (
            await client.post(path, json=body, headers=INTERNAL_AUTH)
        ).json()
        opened = await (await client.get("/api/v1/admin/webhooks", headers=auth)).json()

        failing = False
        probe = await (
            await client.post("/api/v1/admin/webhooks/test", headers=auth)
        ).json()
        closed = await (await client.get("/api/v1/admin/webhooks", headers=auth)).json()
        priced = await (
            await client.post(path, json=body, headers=INTERNAL_AUTH)
        ).json()

    assert sent_before == 6
    assert rejected["unavailable"] == [{"sku": "a", "reason": "circuit_open"}]
    assert opened["circuit"]["products"] == "open"
    assert probe["ok"] is True
    assert closed["circuit"]["products"] == "closed"
    assert priced["products"][0]["price"] == 10.5
    assert len(merchant.requests) == sent_before + 2


async def test_open_circuit_cart_is_webhook_error(
    make_settings, sqlite_url, resolver, start_merchant
):
    """Cart operations behind an open circuit fail with webhook_error, unsent."""
    merchant = await start_merchant(lambda _request: web.Response(status=503))
    settings = make_settings(database_url=sqlite_url, circuit_failure_threshold=2)
    dispatcher = Dispatcher.create(settings, resolver)
    await dispatcher.start()
    try:
        tenant_id, _ = await dispatcher.repository.create_tenant("shop")
        await dispatcher.update_config(
            tenant_id, WebhookSettingsUpdate(cart_url=merchant.url("/cart"))
        )
        add = AddItem(
            action="add",
            store_id="s",
            session_id="u",
            sku="a",
            name="A",
            quantity=1,
            price=2,
        )
        results = [
            await dispatcher.apply_cart_operation(tenant_id, add) for _ in range(3)
        ]
    finally:
        await dispatcher.close()

    assert [result.reason for result in results] == ["webhook_error"] * 3
    assert len(merchant.requests) == 4
