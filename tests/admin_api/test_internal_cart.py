"""Cart operations and session start, end to end over HTTP and in-process.

Every test that takes `client` or `dispatcher` runs once on SQLite and once on
PostgreSQL. Merchants are real HTTPS servers on loopback that record each request.
Signatures are checked here with hmac directly instead of the project's signing
module, so a bug there cannot hide itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import TypeAdapter

from admin_api.app import create_app
from dispatcher.cart import CartOperation
from dispatcher.service import Dispatcher
from dispatcher.webhook_settings import WebhookSettingsUpdate
from tests.conftest import INTERNAL_AUTH, TenantKeys

WEBHOOKS = "/api/v1/admin/webhooks"
STORE = "магазин-1"
SESSION = "гість 🙂"
SKU = "молоко-🥛"
NAME = "Молоко «Ферма» 2,5%"
# Characters that break a query string unless percent-encoded.
TRICKY_SESSION = "гість 1&x=y+z=🍞"
OPERATION: TypeAdapter[CartOperation] = TypeAdapter(CartOperation)
# Generous bound for the concurrency tests, so a deadlock fails instead of hanging.
HANG_GUARD_SECONDS = 30


# --- helpers --------------------------------------------------------------


def cart_path(tenant_id: str) -> str:
    return f"/internal/v1/tenants/{tenant_id}/cart"


def sessions_path(tenant_id: str) -> str:
    return f"/internal/v1/tenants/{tenant_id}/sessions"


def session_cart_path(tenant_id: str, session_id: str) -> str:
    return (
        f"/internal/v1/tenants/{tenant_id}/sessions/{quote(session_id, safe='')}/cart"
    )


def signed_by(secret: str, request: Any) -> bool:
    """Verify a recorded request's signature as a merchant would, with hmac."""
    timestamp = request.headers["X-VIZOCHOK-Timestamp"]
    message = f"{timestamp}.".encode() + request.body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(
        f"sha256={digest}", request.headers["X-VIZOCHOK-Signature"]
    )


async def configure(client: Any, tenant: TenantKeys, **values: Any) -> str | None:
    """PATCH the tenant's webhooks and return the secret if this call generated it."""
    response = await client.patch(WEBHOOKS, json=values, headers=tenant.auth)
    body = await response.json()
    assert response.status == 200, body
    secret: str | None = body.get("secret")
    return secret


async def send(
    client: Any, tenant: TenantKeys, action: str, **fields: Any
) -> dict[str, Any]:
    """POST one cart operation on the default session and return the JSON response."""
    body = {"action": action, "store_id": STORE, "session_id": SESSION, **fields}
    response = await client.post(
        cart_path(tenant.tenant_id), json=body, headers=INTERNAL_AUTH
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def add(
    client: Any, tenant: TenantKeys, sku: str = SKU, **fields: Any
) -> dict[str, Any]:
    values = {"name": NAME, "quantity": 1, "price": 45.9, **fields}
    return await send(client, tenant, "add", sku=sku, **values)


async def start_session(
    client: Any, tenant: TenantKeys, session_id: str = SESSION
) -> dict[str, Any]:
    response = await client.post(
        sessions_path(tenant.tenant_id),
        json={"store_id": STORE, "session_id": session_id},
        headers=INTERNAL_AUTH,
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def platform_cart(
    client: Any, tenant: TenantKeys, session_id: str = SESSION
) -> dict[str, Any]:
    """Return the platform's copy of the session cart from the GET route."""
    response = await client.get(
        session_cart_path(tenant.tenant_id, session_id),
        params={"store_id": STORE},
        headers=INTERNAL_AUTH,
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def line(sku: str = SKU, quantity: float = 1, **fields: Any) -> dict[str, Any]:
    """A cart item as the API returns it."""
    return {
        "sku": sku,
        "name": NAME,
        "price": 45.9,
        "promo_price": None,
        "quantity": quantity,
        "unit": "pcs",
        **fields,
    }


def operation(action: str, session_id: str = SESSION, **fields: Any) -> Any:
    return OPERATION.validate_python(
        {"action": action, "store_id": STORE, "session_id": session_id, **fields}
    )


def accept(_request: Any) -> web.Response:
    return web.json_response({"ok": True})


def reject(reason: str) -> Any:
    return lambda _request: web.json_response({"ok": False, "reason": reason})


async def answer_late(_request: Any) -> web.Response:
    # Twice the 0.5 s timeout the failure tests configure.
    await asyncio.sleep(1.0)
    return web.json_response({"ok": True})


class InFlightTracker:
    """A merchant responder that records bodies and concurrent calls per session."""

    def __init__(self, pause_seconds: float = 0.002) -> None:
        self.pause_seconds = pause_seconds
        self.bodies: list[dict[str, Any]] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()

    async def respond(self, request: Any) -> web.Response:
        body = json.loads(request.body)
        session = body["session_id"]
        self.bodies.append(body)
        self.in_flight[session] += 1
        self.max_in_flight[session] = max(
            self.max_in_flight[session], self.in_flight[session]
        )
        try:
            await asyncio.sleep(self.pause_seconds)
        finally:
            self.in_flight[session] -= 1
        return web.json_response({"ok": True})


@pytest.fixture
async def patient_client(
    make_settings: Any, database_url: str, resolver: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    """A client whose service waits the contract's full 1 s before a retry.

    Timestamps have whole-second resolution, so only a wait of at least a second
    guarantees that a retry is signed with a different timestamp.
    """
    settings = make_settings(database_url=database_url, retry_wait_seconds=1.0)
    app = create_app(settings, Dispatcher.create(settings, resolver))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


# --- the cart webhook request ---------------------------------------------


@pytest.mark.parametrize(
    ("action", "fields", "expected"),
    [
        (
            "add",
            {"sku": SKU, "name": NAME, "quantity": 2, "price": 45.9, "promo_price": 42},
            '{"action":"add","store_id":"магазин-1","session_id":"гість 🙂",'
            '"sku":"молоко-🥛","name":"Молоко «Ферма» 2,5%","quantity":2,"price":45.9}',
        ),
        (
            "remove",
            {"sku": SKU},
            '{"action":"remove","store_id":"магазин-1","session_id":"гість 🙂",'
            '"sku":"молоко-🥛"}',
        ),
        (
            "update_quantity",
            {"sku": SKU, "quantity": 0.5},
            '{"action":"update_quantity","store_id":"магазин-1",'
            '"session_id":"гість 🙂","sku":"молоко-🥛","quantity":0.5}',
        ),
        (
            "clear",
            {},
            '{"action":"clear","store_id":"магазин-1","session_id":"гість 🙂"}',
        ),
    ],
)
async def test_cart_body_exact(client, tenant, merchant, action, fields, expected):
    """Each action sends exactly its contract fields as compact unescaped UTF-8."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await send(client, tenant, action, **fields)
    assert merchant.requests[0].body == expected.encode()


async def test_cart_request_signed(client, tenant, merchant):
    """The cart POST verifies with the secret returned by the first PATCH."""
    merchant.respond = accept
    secret = await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    assert secret is not None
    assert signed_by(secret, merchant.requests[0])


async def test_cart_request_headers(client, tenant, merchant):
    """The cart call is a JSON POST to the configured path with extension headers."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    sent = merchant.requests[0]
    assert sent.method == "POST"
    assert sent.path == "/cart"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"].startswith("VIZOCHOK-Webhooks/")
    assert sent.headers["X-VIZOCHOK-Request-Id"]
    assert sent.headers["X-VIZOCHOK-Timestamp"].isdigit()


# --- cart GET at session start --------------------------------------------


async def test_session_get_query_encoded(client, tenant, merchant):
    """The cart GET carries store and session ids and keeps the URL's own query."""
    merchant.respond = lambda _: web.json_response({"items": []})
    await configure(client, tenant, cart_get_url=merchant.url("/cart?shop=1"))
    await start_session(client, tenant, TRICKY_SESSION)
    sent = merchant.requests[0]
    assert sent.method == "GET"
    assert sent.path == "/cart"
    assert sent.query == {
        "shop": "1",
        "store_id": STORE,
        "session_id": TRICKY_SESSION,
    }


async def test_session_get_signed_over_empty_body(client, tenant, merchant):
    """The cart GET has no body and its signature covers "{timestamp}."."""
    merchant.respond = lambda _: web.json_response({"items": []})
    secret = await configure(client, tenant, cart_get_url=merchant.url("/cart"))
    await start_session(client, tenant)
    sent = merchant.requests[0]
    timestamp = sent.headers["X-VIZOCHOK-Timestamp"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode(), hashlib.sha256
    ).hexdigest()
    assert sent.body == b""
    assert sent.headers["X-VIZOCHOK-Signature"] == f"sha256={expected}"


async def test_session_seeds_cart(client, tenant, merchant):
    """Items from the cart GET become the session cart, totalled with promotions."""
    items = [
        {"sku": "хліб-01", "name": "Хліб", "price": 32, "quantity": 1, "unit": "pcs"},
        {"sku": "сир", "name": "Сир", "price": 50, "promo_price": 40, "quantity": 0.5},
    ]
    merchant.respond = lambda _: web.json_response({"items": items})
    await configure(client, tenant, cart_get_url=merchant.url("/cart"))
    expected_items = [
        {
            "sku": "хліб-01",
            "name": "Хліб",
            "price": 32,
            "promo_price": None,
            "quantity": 1,
            "unit": "pcs",
        },
        {
            "sku": "сир",
            "name": "Сир",
            "price": 50,
            "promo_price": 40,
            "quantity": 0.5,
            "unit": "pcs",
        },
    ]

    answer = await start_session(client, tenant)

    assert answer == {"ok": True, "items": expected_items, "total": 52.0}
    assert (await platform_cart(client, tenant))["items"] == expected_items


async def test_session_skips_invalid_items(client, tenant, merchant):
    """Invalid cart GET items are skipped and counted in skipped_items."""
    items = [
        {"sku": "good", "quantity": 2, "price": 10},
        {"name": "no sku", "quantity": 1},
        {"sku": "zero", "quantity": 0},
        {"sku": "text", "quantity": "1"},
        {"sku": "negative", "quantity": 1, "price": -5},
        "not an object",
        {"sku": "good", "quantity": 7},
    ]
    merchant.respond = lambda _: web.json_response({"items": items})
    await configure(client, tenant, cart_get_url=merchant.url("/cart"))

    answer = await start_session(client, tenant)

    assert [item["sku"] for item in answer["items"]] == ["good"]
    assert answer["items"][0]["quantity"] == 2
    assert answer["skipped_items"] == 6
    assert answer["total"] == 20.0


@pytest.mark.parametrize(
    ("respond", "reason", "attempts"),
    [
        (lambda _: web.Response(status=500), "webhook_error", 2),
        (answer_late, "webhook_timeout", 2),
        (lambda _: web.Response(text="<html>cart</html>"), "webhook_error", 1),
        (lambda _: web.json_response({"items": "none"}), "webhook_error", 1),
    ],
    ids=["500-twice", "timeout", "html", "items-not-list"],
)
async def test_session_get_failure_empties_cart(
    client, tenant, merchant, respond, reason, attempts
):
    """A failed cart GET starts the session empty and reports the reason."""
    await configure(
        client, tenant, cart_get_url=merchant.url("/cart"), timeout_seconds=0.5
    )
    # Without a cart URL the platform applies this add itself and sends no webhook.
    await add(client, tenant)
    merchant.respond = respond

    answer = await start_session(client, tenant)

    assert answer == {"ok": False, "items": [], "total": 0.0, "reason": reason}
    assert len(merchant.requests) == attempts
    assert (await platform_cart(client, tenant))["items"] == []


async def test_session_without_cart_get_url(client, tenant, merchant):
    """Without a cart GET URL a new session starts empty and nothing is sent."""
    await configure(client, tenant, products_url=merchant.url())
    answer = await start_session(client, tenant)
    assert answer == {"ok": True, "items": [], "total": 0.0}
    assert merchant.requests == []


# --- cart_changed ---------------------------------------------------------


async def test_add_is_item_selected(client, tenant, merchant):
    """An accepted add returns item_selected with the item, cart and total."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    answer = await add(client, tenant, quantity=2, promo_price=42)
    assert answer == {
        "ok": True,
        "cart_changed": {
            "action": "item_selected",
            "sku": SKU,
            "name": NAME,
            "quantity": 2,
            "price": 45.9,
            "items": [line(quantity=2, promo_price=42)],
            "total": 84.0,
        },
    }


async def test_update_is_quantity_updated(client, tenant, merchant):
    """An accepted update_quantity returns quantity_updated with the new quantity."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    answer = await send(client, tenant, "update_quantity", sku=SKU, quantity=3)
    assert answer["cart_changed"] == {
        "action": "quantity_updated",
        "sku": SKU,
        "name": NAME,
        "quantity": 3,
        "price": 45.9,
        "items": [line(quantity=3)],
        "total": 137.7,
    }


async def test_remove_is_item_removed(client, tenant, merchant):
    """An accepted remove returns item_removed and the remaining cart."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    await add(client, tenant, sku="хліб", price=30)
    answer = await send(client, tenant, "remove", sku=SKU)
    assert answer["cart_changed"] == {
        "action": "item_removed",
        "sku": SKU,
        "name": NAME,
        "quantity": 0,
        "price": 45.9,
        "items": [line(sku="хліб", price=30)],
        "total": 30.0,
    }


async def test_clear_is_cart_cleared(client, tenant, merchant):
    """An accepted clear returns cart_cleared with no sku and an empty cart."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    answer = await send(client, tenant, "clear")
    assert answer["cart_changed"] == {
        "action": "cart_cleared",
        "items": [],
        "total": 0.0,
    }


async def test_total_with_promo_and_fraction(client, tenant, merchant):
    """0.5 kg at promo 40 plus 3 at 12.99 totals 58.97."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant, sku="сир", quantity=0.5, price=50, promo_price=40)
    answer = await add(client, tenant, sku="milk", quantity=3, price=12.99)
    assert answer["cart_changed"]["total"] == 58.97


async def test_accepted_change_is_stored(client, tenant, merchant):
    """After accepted operations the GET route shows the same cart."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    answer = await send(client, tenant, "update_quantity", sku=SKU, quantity=4)
    stored = await platform_cart(client, tenant)
    assert stored["items"] == answer["cart_changed"]["items"]
    assert stored["total"] == answer["cart_changed"]["total"]


async def test_update_to_zero_removes_item(client, tenant, merchant):
    """update_quantity 0 is valid, reaches the merchant, and removes the item."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    answer = await send(client, tenant, "update_quantity", sku=SKU, quantity=0)
    assert json.loads(merchant.requests[1].body)["quantity"] == 0
    assert answer["cart_changed"]["action"] == "quantity_updated"
    assert answer["cart_changed"]["items"] == []
    assert (await platform_cart(client, tenant))["items"] == []


# --- rejections and failures ----------------------------------------------


@pytest.mark.parametrize(
    "reason",
    ["out_of_stock", "quantity_exceeded", "склад порожній 🙁 спробуйте завтра"],
)
async def test_rejection_reason_passed_through(client, tenant, merchant, reason):
    """ok false passes the merchant's reason on unchanged and keeps the cart."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant)
    merchant.respond = reject(reason)

    answer = await add(client, tenant, sku="other")

    assert answer == {"ok": False, "reason": reason}
    assert (await platform_cart(client, tenant))["items"] == [line()]


async def test_long_reason_cut_to_200(client, tenant, merchant):
    """A reason over 200 characters reaches the caller cut to 200."""
    reason = "ні" * 150
    merchant.respond = reject(reason)
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    answer = await add(client, tenant)
    assert answer == {"ok": False, "reason": reason[:200]}


@pytest.mark.parametrize(
    ("respond", "reason", "attempts"),
    [
        (answer_late, "webhook_timeout", 2),
        (lambda _: web.Response(status=500), "webhook_error", 2),
        (lambda _: web.Response(status=404), "webhook_error", 1),
        (
            lambda _: web.Response(status=302, headers={"Location": "/moved"}),
            "webhook_error",
            1,
        ),
        (lambda _: web.Response(text="<html>ok</html>"), "webhook_error", 1),
        (lambda _: web.json_response({"ok": "yes"}), "webhook_error", 1),
    ],
    ids=["timeout", "500-twice", "404", "302", "html", "ok-not-boolean"],
)
async def test_failure_keeps_cart(client, tenant, merchant, respond, reason, attempts):
    """A failed cart call returns webhook_timeout or webhook_error, cart unchanged."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"), timeout_seconds=0.5)
    await add(client, tenant)
    merchant.respond = respond

    answer = await send(client, tenant, "update_quantity", sku=SKU, quantity=5)

    assert answer == {"ok": False, "reason": reason}
    assert len(merchant.requests) == 1 + attempts
    assert (await platform_cart(client, tenant))["items"] == [line()]


@pytest.mark.parametrize("late_attempt", [1, 2], ids=["late-first", "late-second"])
async def test_timeout_and_500_is_error(client, tenant, merchant, late_attempt):
    """A call with one timeout and one 500 is webhook_error, not webhook_timeout."""

    async def respond(request: Any) -> web.StreamResponse:
        if len(merchant.requests) == late_attempt:
            return await answer_late(request)
        return web.Response(status=500)

    merchant.respond = respond
    await configure(client, tenant, cart_url=merchant.url("/cart"), timeout_seconds=0.5)

    answer = await add(client, tenant)

    assert answer == {"ok": False, "reason": "webhook_error"}
    assert len(merchant.requests) == 2


async def test_refused_connection_is_error(client, tenant):
    """A cart URL where nothing listens gives webhook_error and no cart."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The socket is closed again, so connections to the port are refused.
    await configure(client, tenant, cart_url=f"https://127.0.0.1:{port}/cart")

    answer = await add(client, tenant)
    response = await client.get(
        session_cart_path(tenant.tenant_id, SESSION),
        params={"store_id": STORE},
        headers=INTERNAL_AUTH,
    )

    assert answer == {"ok": False, "reason": "webhook_error"}
    assert response.status == 404


async def test_retried_add_applied_once(patient_client, tenant, merchant):
    """A 500 then ok reaches the merchant twice, signed afresh, and applies once."""
    merchant.respond = lambda request: (
        web.Response(status=500) if len(merchant.requests) == 1 else accept(request)
    )
    secret = await configure(patient_client, tenant, cart_url=merchant.url("/cart"))

    answer = await add(patient_client, tenant)

    first, second = merchant.requests
    assert answer["ok"] is True
    assert first.body == second.body
    assert (
        first.headers["X-VIZOCHOK-Request-Id"]
        == second.headers["X-VIZOCHOK-Request-Id"]
    )
    assert (
        first.headers["X-VIZOCHOK-Signature"] != second.headers["X-VIZOCHOK-Signature"]
    )
    assert signed_by(secret, first)
    assert signed_by(secret, second)
    assert (await platform_cart(patient_client, tenant))["items"] == [line()]


# --- invalid input --------------------------------------------------------

VALID_ADD = {
    "action": "add",
    "store_id": STORE,
    "session_id": SESSION,
    "sku": SKU,
    "name": NAME,
    "quantity": 1,
    "price": 45.9,
}


@pytest.mark.parametrize(
    ("changes", "dropped", "field"),
    [
        ({"action": "buy"}, (), "action"),
        ({}, ("action",), "action"),
        ({}, ("sku",), "sku"),
        ({}, ("session_id",), "session_id"),
        ({}, ("price",), "price"),
        ({"quantity": 0}, (), "quantity"),
        ({"quantity": -1}, (), "quantity"),
        ({"quantity": "1"}, (), "quantity"),
        ({"quantity": True}, (), "quantity"),
        ({"price": 0}, (), "price"),
        ({"promo_price": "42"}, (), "promo_price"),
        ({"store_id": 5}, (), "store_id"),
        ({"session_id": "s" * 257}, (), "session_id"),
        ({"coupon": "FREE"}, (), "coupon"),
        ({"action": "remove", "sku": ""}, ("name", "quantity", "price"), "sku"),
        (
            {"action": "update_quantity", "quantity": -1},
            ("name", "price"),
            "quantity",
        ),
        ({"action": "clear"}, ("name", "quantity", "price"), "sku"),
    ],
    ids=[
        "unknown-action",
        "missing-action",
        "missing-sku",
        "missing-session",
        "missing-price",
        "quantity-0",
        "quantity-negative",
        "quantity-string",
        "quantity-bool",
        "price-0",
        "promo-string",
        "store-not-string",
        "session-too-long",
        "extra-field",
        "remove-empty-sku",
        "update-negative",
        "clear-with-sku",
    ],
)
async def test_invalid_operation_is_422(
    client, tenant, merchant, changes, dropped, field
):
    """Invalid input is a 422 naming the field and never reaches the merchant."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    body = {k: v for k, v in {**VALID_ADD, **changes}.items() if k not in dropped}

    response = await client.post(
        cart_path(tenant.tenant_id), json=body, headers=INTERNAL_AUTH
    )
    answer = await response.json()

    assert response.status == 422
    assert answer["detail"][0]["loc"][:2] == ["body", field]
    assert merchant.requests == []


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"quantity": NaN}', b"\xff"])
async def test_malformed_operation_is_422(client, tenant, merchant, raw):
    """A body that is not a JSON object is a 422 and nothing is sent."""
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    response = await client.post(
        cart_path(tenant.tenant_id), data=raw, headers=INTERNAL_AUTH
    )
    assert response.status == 422
    assert merchant.requests == []


async def test_unknown_tenant_is_404(client):
    """A cart operation for an unknown tenant is a 404."""
    response = await client.post(
        cart_path("no-such-tenant"), json=VALID_ADD, headers=INTERNAL_AUTH
    )
    assert response.status == 404


async def test_cart_route_needs_token(client, tenant):
    """The cart route rejects a tenant's admin key in place of the service token."""
    response = await client.post(
        cart_path(tenant.tenant_id), json=VALID_ADD, headers=tenant.auth
    )
    assert response.status == 401


async def test_unknown_session_cart_is_404(client, tenant):
    """The GET route returns 404 for a session the platform never stored."""
    response = await client.get(
        session_cart_path(tenant.tenant_id, "nobody"),
        params={"store_id": STORE},
        headers=INTERNAL_AUTH,
    )
    assert response.status == 404


async def test_session_cart_needs_store_id(client, tenant):
    """The GET route without store_id is a 422 naming the query parameter."""
    response = await client.get(
        session_cart_path(tenant.tenant_id, SESSION), headers=INTERNAL_AUTH
    )
    answer = await response.json()
    assert response.status == 422
    assert answer["detail"][0]["loc"] == ["query", "store_id"]


# --- without a cart URL ---------------------------------------------------


async def test_without_cart_url_platform_keeps_cart(client, tenant, merchant):
    """Without cart_url every operation succeeds locally and nothing is sent."""
    await configure(client, tenant, products_url=merchant.url())
    added = await add(client, tenant, quantity=2)
    await add(client, tenant, sku="хліб", price=30)
    updated = await send(client, tenant, "update_quantity", sku=SKU, quantity=5)
    removed = await send(client, tenant, "remove", sku="хліб")
    cleared = await send(client, tenant, "clear")

    assert added["cart_changed"]["items"] == [line(quantity=2)]
    assert updated["cart_changed"]["items"][0]["quantity"] == 5
    assert removed["cart_changed"]["items"] == [line(quantity=5)]
    assert cleared["cart_changed"]["action"] == "cart_cleared"
    assert (await platform_cart(client, tenant))["items"] == []
    assert merchant.requests == []


@pytest.mark.parametrize(
    ("action", "fields"),
    [("remove", {}), ("update_quantity", {"quantity": 2})],
)
async def test_without_cart_url_absent_sku(client, tenant, action, fields):
    """Without cart_url, removing or updating a SKU the cart lacks is not_in_cart."""
    await add(client, tenant)
    answer = await send(client, tenant, action, sku="absent", **fields)
    assert answer == {"ok": False, "reason": "not_in_cart"}
    assert (await platform_cart(client, tenant))["items"] == [line()]


# --- ordering and concurrency ---------------------------------------------


async def test_one_session_runs_in_order(dispatcher, tenant, merchant):
    """Fifty concurrent operations on one session reach the merchant one by one."""
    tracker = InFlightTracker()
    merchant.respond = tracker.respond
    await dispatcher.update_config(
        tenant.tenant_id, WebhookSettingsUpdate(cart_url=merchant.url("/cart"))
    )
    operations = [operation("add", sku=SKU, name=NAME, quantity=1, price=10)]
    operations += [
        operation("update_quantity", sku=SKU, quantity=quantity)
        for quantity in range(1, 51)
    ]

    async with asyncio.timeout(HANG_GUARD_SECONDS):
        results = await asyncio.gather(
            *(
                dispatcher.apply_cart_operation(tenant.tenant_id, op)
                for op in operations
            )
        )
    stored = await dispatcher.session_cart(tenant.tenant_id, STORE, SESSION)

    assert all(result.ok for result in results)
    assert tracker.max_in_flight[SESSION] == 1
    assert [body.get("quantity") for body in tracker.bodies] == [1, *range(1, 51)]
    assert [body["action"] for body in tracker.bodies][:2] == ["add", "update_quantity"]
    assert stored is not None
    assert [item.quantity for item in stored.items] == [50]


async def test_sessions_overlap_at_merchant(dispatcher, tenant, merchant):
    """Operations on ten different sessions are all in flight at once."""
    sessions = [f"session-{index}" for index in range(10)]
    in_flight = 0
    max_in_flight = 0
    all_arrived = asyncio.Event()

    async def respond(_request: Any) -> web.Response:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        if in_flight == len(sessions):
            all_arrived.set()
        try:
            # Below the tenant's 5 s timeout, so a serialising bug shows up as a
            # low count here rather than as timeouts and retries.
            await asyncio.wait_for(all_arrived.wait(), timeout=4)
        except TimeoutError:
            pass
        finally:
            in_flight -= 1
        return web.json_response({"ok": True})

    merchant.respond = respond
    await dispatcher.update_config(
        tenant.tenant_id, WebhookSettingsUpdate(cart_url=merchant.url("/cart"))
    )
    operations = [operation("clear", session_id=session) for session in sessions]

    async with asyncio.timeout(HANG_GUARD_SECONDS):
        results = await asyncio.gather(
            *(
                dispatcher.apply_cart_operation(tenant.tenant_id, op)
                for op in operations
            )
        )

    assert all(result.ok for result in results)
    assert max_in_flight == len(sessions)


async def test_two_instances_take_turns(
    make_settings, postgres_url, resolver, merchant
):
    """Two instances on one PostgreSQL never overlap calls for one session."""
    tracker = InFlightTracker(pause_seconds=0.01)
    merchant.respond = tracker.respond
    first = Dispatcher.create(make_settings(database_url=postgres_url), resolver)
    second = Dispatcher.create(make_settings(database_url=postgres_url), resolver)
    await first.start()
    await second.start()
    try:
        tenant_id, _ = await first.repository.create_tenant("Shared shop")
        await first.update_config(
            tenant_id, WebhookSettingsUpdate(cart_url=merchant.url("/cart"))
        )
        adds = [
            (instance, operation("add", sku=SKU, name=NAME, quantity=1, price=10))
            for instance in [first, second] * 10
        ]
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            results = await asyncio.gather(
                *(instance.apply_cart_operation(tenant_id, op) for instance, op in adds)
            )
        stored = await second.session_cart(tenant_id, STORE, SESSION)
    finally:
        await first.close()
        await second.close()

    assert all(result.ok for result in results)
    assert len(tracker.bodies) == 20
    assert tracker.max_in_flight[SESSION] == 1
    assert stored is not None
    assert [item.quantity for item in stored.items] == [20]


async def test_cart_survives_restart(client, tenant, merchant, settings, resolver):
    """A new Dispatcher on the same database reads the cart the old one stored."""
    merchant.respond = accept
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    await add(client, tenant, quantity=2, promo_price=42)
    await add(client, tenant, sku="хліб", quantity=0.5, price=30)

    restarted = Dispatcher.create(settings, resolver)
    await restarted.start()
    try:
        view = await restarted.session_cart(tenant.tenant_id, STORE, SESSION)
    finally:
        await restarted.close()

    assert view is not None
    assert view.to_json() == await platform_cart(client, tenant)
    assert [item.sku for item in view.items] == [SKU, "хліб"]


# --- the admin probe ------------------------------------------------------


async def test_probe_cart_refused(client, tenant, merchant):
    """Probing the cart webhook is a 400 and sends nothing."""
    await configure(client, tenant, cart_url=merchant.url("/cart"))
    response = await client.post(
        f"{WEBHOOKS}/test", json={"webhook": "cart"}, headers=tenant.auth
    )
    assert response.status == 400
    assert merchant.requests == []


async def test_probe_cart_get_signed(client, tenant, merchant):
    """Probing cart_get sends one signed GET with an empty body."""
    merchant.respond = lambda _: web.json_response({"items": []})
    secret = await configure(client, tenant, cart_get_url=merchant.url("/cart"))
    response = await client.post(
        f"{WEBHOOKS}/test", json={"webhook": "cart_get"}, headers=tenant.auth
    )
    body = await response.json()
    (sent,) = merchant.requests
    assert body["ok"] is True
    assert sent.method == "GET"
    assert sent.body == b""
    assert signed_by(secret, sent)
    assert set(sent.query) == {"store_id", "session_id"}
