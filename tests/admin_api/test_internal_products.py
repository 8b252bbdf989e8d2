"""The internal products check route, end to end over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event

from tests.conftest import INTERNAL_AUTH, TenantKeys

WEBHOOKS = "/api/v1/admin/webhooks"


def check_path(tenant_id: str) -> str:
    return f"/internal/v1/tenants/{tenant_id}/products/check"


async def configure(client: Any, tenant: TenantKeys, **values: Any) -> None:
    response = await client.patch(WEBHOOKS, json=values, headers=tenant.auth)
    assert response.status == 200, await response.text()


def catalog_merchant(products: dict[str, dict[str, Any]]) -> Any:
    """Return a responder that prices the requested SKUs it knows."""

    def respond(request: Any) -> web.Response:
        skus = json.loads(request.body)["skus"]
        found = [{"sku": sku, **products[sku]} for sku in skus if sku in products]
        return web.json_response({"products": found})

    return respond


async def test_check_filters_and_keeps_order(client, tenant, merchant):
    """In-stock products come back priced, in input order, with catalog fields."""
    merchant.respond = catalog_merchant(
        {
            "молоко-1": {"price": 45.9, "in_stock": True},
            "milk-2": {
                "price": 52,
                "in_stock": True,
                "promo_price": 42,
                "promo_label": "-19%",
            },
            "milk-3": {"price": 38.5, "in_stock": False},
            "🍞-4": {"price": 30, "in_stock": True},
        }
    )
    await configure(client, tenant, products_url=merchant.url())
    products = [
        {"sku": "🍞-4", "name": "Хліб"},
        {"sku": "milk-2", "name": "Milk 2.5%", "category_path": ["Dairy"]},
        {"sku": "milk-3"},
        {"sku": "gone"},
        {"sku": "молоко-1"},
    ]

    response = await client.post(
        check_path(tenant.tenant_id),
        json={"store_id": "store-1", "products": products},
        headers=INTERNAL_AUTH,
    )
    body = await response.json()

    assert response.status == 200
    assert [product["sku"] for product in body["products"]] == [
        "🍞-4",
        "milk-2",
        "молоко-1",
    ]
    assert body["products"][0]["name"] == "Хліб"
    assert body["products"][1] == {
        "sku": "milk-2",
        "name": "Milk 2.5%",
        "category_path": ["Dairy"],
        "price": 52.0,
        "in_stock": True,
        "promo_price": 42.0,
        "promo_label": "-19%",
    }
    assert body["unavailable"] == [
        {"sku": "milk-3", "reason": "out_of_stock"},
        {"sku": "gone", "reason": "not_returned"},
    ]


async def test_check_sends_exact_body(client, tenant, merchant):
    """The merchant receives compact UTF-8 JSON with the SKUs and store id."""
    await configure(client, tenant, products_url=merchant.url())
    await client.post(
        check_path(tenant.tenant_id),
        json={"store_id": "магазин-1", "products": [{"sku": "сир"}]},
        headers=INTERNAL_AUTH,
    )
    assert merchant.requests[0].body == (
        '{"skus":["сир"],"store_id":"магазин-1"}'.encode()
    )


async def test_merchant_failure_is_200(client, tenant, merchant):
    """A merchant returning 500 twice makes every SKU webhook_error, not a 500."""
    merchant.respond = lambda _: web.Response(status=500)
    await configure(client, tenant, products_url=merchant.url())
    response = await client.post(
        check_path(tenant.tenant_id),
        json={"store_id": "s", "products": [{"sku": "a"}, {"sku": "b"}]},
        headers=INTERNAL_AUTH,
    )
    body = await response.json()
    assert response.status == 200
    assert body == {
        "products": [],
        "unavailable": [
            {"sku": "a", "reason": "webhook_error"},
            {"sku": "b", "reason": "webhook_error"},
        ],
    }
    assert len(merchant.requests) == 2


async def test_unconfigured_is_not_configured(client, tenant):
    """Without a products URL every SKU is not_configured."""
    response = await client.post(
        check_path(tenant.tenant_id),
        json={"store_id": "s", "products": [{"sku": "a"}]},
        headers=INTERNAL_AUTH,
    )
    body = await response.json()
    assert body["unavailable"] == [{"sku": "a", "reason": "not_configured"}]


async def test_unknown_tenant_is_404(client):
    """An unknown tenant id is a 404 with a message."""
    response = await client.post(
        check_path("no-such-tenant"),
        json={"store_id": "s", "products": [{"sku": "a"}]},
        headers=INTERNAL_AUTH,
    )
    assert response.status == 404
    assert "no-such-tenant" in (await response.json())["detail"]


async def test_wrong_token_is_401(client, tenant):
    """The internal routes need the service token."""
    response = await client.post(
        check_path(tenant.tenant_id),
        json={"store_id": "s", "products": []},
        headers={"Authorization": f"Bearer {tenant.api_key}"},
    )
    assert response.status == 401


async def test_internal_disabled_without_token(make_settings, database_url, resolver):
    """Without VIZOCHOK_INTERNAL_TOKEN the internal routes return 503."""
    from aiohttp.test_utils import TestClient, TestServer

    from admin_api.app import create_app
    from dispatcher.service import Dispatcher

    settings = make_settings(database_url=database_url, internal_token=None)
    app = create_app(settings, Dispatcher.create(settings, resolver))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            check_path("any"), json={"store_id": "s", "products": []}
        )
        body = await response.json()
    assert response.status == 503
    assert "VIZOCHOK_INTERNAL_TOKEN" in body["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"products": [{"sku": "a"}]}, ["body", "store_id"]),
        (
            {"store_id": "s", "products": [{"name": "x"}]},
            ["body", "products", 0, "sku"],
        ),
        ({"store_id": "s", "products": [{"sku": 5}]}, ["body", "products", 0, "sku"]),
        ({"store_id": "s", "products": [{"sku": ""}]}, ["body", "products", 0, "sku"]),
        ({"store_id": "s", "products": "a"}, ["body", "products"]),
        ({"store_id": 1, "products": []}, ["body", "store_id"]),
        ({"store_id": "s", "products": [], "extra": 1}, ["body", "extra"]),
    ],
)
async def test_invalid_check_is_422(client, tenant, merchant, body, loc):
    """Bad input is a 422 naming the field, and nothing reaches the merchant."""
    await configure(client, tenant, products_url=merchant.url())
    response = await client.post(
        check_path(tenant.tenant_id), json=body, headers=INTERNAL_AUTH
    )
    answer = await response.json()
    assert response.status == 422
    assert answer["detail"][0]["loc"] == loc
    assert merchant.requests == []


async def test_warm_check_makes_no_query(client, dispatcher, tenant, merchant):
    """Once a tenant's config is cached, a products check runs no SQL."""
    await configure(client, tenant, products_url=merchant.url())
    body = {"store_id": "s", "products": [{"sku": "a"}]}
    await client.post(check_path(tenant.tenant_id), json=body, headers=INTERNAL_AUTH)

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = dispatcher.repository.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = await client.post(
            check_path(tenant.tenant_id), json=body, headers=INTERNAL_AUTH
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert response.status == 200
    assert statements == []
    assert len(merchant.requests) == 2


async def test_tenant_uses_own_url_and_secret(
    client, dispatcher, tenant, start_merchant
):
    """Each tenant's check goes to its own merchant, signed with its own secret."""
    from tests.admin_api.test_admin_webhooks import signed_by

    other = TenantKeys(*await dispatcher.repository.create_tenant("Other"))
    mine, theirs = await start_merchant(None), await start_merchant(None)
    first = await client.patch(
        WEBHOOKS, json={"products_url": mine.url()}, headers=tenant.auth
    )
    second = await client.patch(
        WEBHOOKS, json={"products_url": theirs.url()}, headers=other.auth
    )
    my_secret = (await first.json())["secret"]
    their_secret = (await second.json())["secret"]

    body = {"store_id": "s", "products": [{"sku": "a"}]}
    await client.post(check_path(other.tenant_id), json=body, headers=INTERNAL_AUTH)

    assert mine.requests == []
    assert len(theirs.requests) == 1
    assert signed_by(their_secret, theirs.requests[0])
    assert not signed_by(my_secret, theirs.requests[0])


async def test_rebinding_blocked_at_send(client, tenant, merchant, resolver):
    """A name that resolves privately after it was saved is refused at send time."""
    resolver.table["shop.test"] = ["93.184.216.34"]
    # The saved URL passes with a public address. The connection to it is never
    # attempted, because the name then rebinds to a private address.
    await configure(client, tenant, products_url=f"https://shop.test:{merchant.port}/p")
    resolver.table["shop.test"] = ["10.0.0.7"]

    response = await client.post(
        check_path(tenant.tenant_id),
        json={"store_id": "s", "products": [{"sku": "a"}]},
        headers=INTERNAL_AUTH,
    )
    body = await response.json()
    assert body["unavailable"] == [{"sku": "a", "reason": "webhook_error"}]
    assert merchant.requests == []
