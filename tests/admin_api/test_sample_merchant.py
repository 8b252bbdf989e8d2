"""The sample merchant over real HTTPS on loopback, signed by an independent HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from admin_api.sample_merchant import SampleMerchant, serve_merchant

SECRET = "sample-merchant-test-secret"
SESSION = "user-123"


def sign(body: bytes, secret: str = SECRET, age_seconds: int = 0) -> dict[str, str]:
    """Signature headers computed here, independently of dispatcher.signing."""
    timestamp = str(int(time.time()) - age_seconds)
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {
        "X-VIZOCHOK-Timestamp": timestamp,
        "X-VIZOCHOK-Signature": f"sha256={digest}",
    }


def encode(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class MerchantClient:
    """A client for one running sample merchant."""

    http: aiohttp.ClientSession
    base_url: str
    merchant: SampleMerchant

    async def send(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        url = self.base_url + path
        async with self.http.request(method, url, data=body, headers=headers) as reply:
            return reply.status, json.loads(await reply.read())

    async def products(self, skus: list[str]) -> tuple[int, Any]:
        body = encode({"skus": skus, "store_id": "store-1"})
        return await self.send("POST", "/webhooks/products", body, sign(body))

    async def cart(
        self, operation: dict[str, Any], request_id: str | None = None
    ) -> Any:
        body = encode({"store_id": "store-1", "session_id": SESSION, **operation})
        headers = sign(body)
        if request_id is not None:
            headers["X-VIZOCHOK-Request-Id"] = request_id
        status, response = await self.send("POST", "/webhooks/cart", body, headers)
        assert status == 200
        return response

    async def cart_items(self, session_id: str = SESSION) -> list[dict[str, Any]]:
        path = f"/webhooks/cart?store_id=store-1&session_id={session_id}"
        status, response = await self.send("GET", path, b"", sign(b""))
        assert status == 200
        items: list[dict[str, Any]] = response["items"]
        return items


@pytest.fixture
def sample_merchant() -> SampleMerchant:
    merchant = SampleMerchant()
    merchant.set_secret(SECRET)
    return merchant


@asynccontextmanager
async def open_client(
    merchant: SampleMerchant, server_ssl: ssl.SSLContext, ca_file: Path
) -> AsyncIterator[MerchantClient]:
    client_ssl = ssl.create_default_context(cafile=str(ca_file))
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with (
        serve_merchant(merchant, server_ssl) as base_url,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        yield MerchantClient(http, base_url, merchant)


@pytest.fixture
async def client(
    sample_merchant: SampleMerchant, server_ssl: ssl.SSLContext, ca_file: Path
) -> AsyncIterator[MerchantClient]:
    async with open_client(sample_merchant, server_ssl, ca_file) as merchant_client:
        yield merchant_client


# --- products ----------------------------------------------------------------


async def test_products_signed_request_gets_prices(client: MerchantClient) -> None:
    """A signed request gets price and stock for every SKU in the catalog."""
    status, response = await client.products(["milk-001", "yogurt-001", "хліб-001"])

    assert status == 200
    offers = {offer["sku"]: offer for offer in response["products"]}
    assert offers["milk-001"] == {"sku": "milk-001", "price": 45.9, "in_stock": True}
    assert offers["yogurt-001"]["in_stock"] is False
    assert offers["хліб-001"]["price"] == 32.0


async def test_products_promotion_fields(client: MerchantClient) -> None:
    """A product on promotion carries promo_price and promo_label."""
    _, response = await client.products(["kefir-001"])

    [offer] = response["products"]
    assert offer["promo_price"] == 42.0
    assert offer["promo_label"] == "-19%"


async def test_products_unknown_sku_left_out(client: MerchantClient) -> None:
    """An unknown SKU is not returned, and known ones still are."""
    _, response = await client.products(["no-such-sku", "milk-001"])

    assert [offer["sku"] for offer in response["products"]] == ["milk-001"]


async def test_products_body_without_skus_is_400(client: MerchantClient) -> None:
    """A signed body without a 'skus' array is a bad request."""
    body = encode({"store_id": "store-1"})
    status, response = await client.send("POST", "/webhooks/products", body, sign(body))

    assert status == 400
    assert "skus" in response["error"]


# --- signatures --------------------------------------------------------------


async def test_bad_signature_is_401(client: MerchantClient) -> None:
    """A signature made with another secret is rejected."""
    body = encode({"skus": ["milk-001"], "store_id": "store-1"})
    headers = sign(body, secret="some-other-secret-value")

    status, response = await client.send("POST", "/webhooks/products", body, headers)

    assert status == 401
    assert response == {"error": "invalid signature"}


@pytest.mark.parametrize("age_seconds", [400, -400])
async def test_timestamp_outside_window_is_401(
    client: MerchantClient, age_seconds: int
) -> None:
    """A timestamp 400 s in the past or the future is rejected."""
    body = encode({"skus": ["milk-001"], "store_id": "store-1"})
    headers = sign(body, age_seconds=age_seconds)

    status, response = await client.send("POST", "/webhooks/products", body, headers)

    assert status == 401
    assert response == {"error": "invalid signature"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/webhooks/products"),
        ("POST", "/webhooks/cart"),
        ("GET", f"/webhooks/cart?session_id={SESSION}"),
    ],
)
async def test_missing_signature_is_401(
    client: MerchantClient, method: str, path: str
) -> None:
    """Every route rejects a request without signature headers."""
    body = b"" if method == "GET" else encode({"action": "clear"})

    status, response = await client.send(method, path, body, {})

    assert status == 401
    assert response == {"error": "invalid signature"}


async def test_tampered_body_is_401(client: MerchantClient) -> None:
    """A body changed after signing no longer matches its signature."""
    signed = encode({"skus": ["milk-001"], "store_id": "store-1"})
    sent = encode({"skus": ["kefir-001"], "store_id": "store-1"})

    status, _ = await client.send("POST", "/webhooks/products", sent, sign(signed))

    assert status == 401


async def test_secret_unset_rejects_requests(
    server_ssl: ssl.SSLContext, ca_file: Path
) -> None:
    """Before set_secret, every request is rejected, then signed ones pass."""
    merchant = SampleMerchant()
    async with open_client(merchant, server_ssl, ca_file) as client:
        status_before, _ = await client.products(["milk-001"])
        merchant.set_secret(SECRET)
        status_after, _ = await client.products(["milk-001"])

    assert status_before == 401
    assert status_after == 200


# --- cart --------------------------------------------------------------------


async def test_cart_add_puts_item_in_cart(client: MerchantClient) -> None:
    """Adding a product returns ok and the cart lists it at the catalog price."""
    response = await client.cart(
        {"action": "add", "sku": "milk-001", "name": "Milk", "quantity": 2, "price": 1}
    )

    assert response == {"ok": True}
    [item] = await client.cart_items()
    assert item["sku"] == "milk-001"
    assert item["quantity"] == 2
    assert item["price"] == 45.9


async def test_cart_add_twice_sums_quantities(client: MerchantClient) -> None:
    """A second add of the same SKU raises the quantity of its line."""
    add = {"action": "add", "sku": "apples-kg", "quantity": 0.5}
    await client.cart(add)
    await client.cart(add)

    [item] = await client.cart_items()
    assert item["quantity"] == 1.0
    assert item["unit"] == "kg"


@pytest.mark.parametrize(
    ("operation", "reason"),
    [
        ({"action": "add", "sku": "yogurt-001", "quantity": 1}, "out_of_stock"),
        ({"action": "add", "sku": "no-such-sku", "quantity": 1}, "product_not_found"),
        ({"action": "add", "sku": "milk-001", "quantity": 25}, "quantity_exceeded"),
        ({"action": "add", "quantity": 1}, "missing_sku"),
        ({"action": "add", "sku": "milk-001"}, "missing_params"),
        ({"action": "add", "sku": "milk-001", "quantity": 0}, "invalid_quantity"),
        ({"action": "add", "sku": "milk-001", "quantity": True}, "invalid_quantity"),
        ({"action": "remove", "sku": "milk-001"}, "not_in_cart"),
        ({"action": "remove"}, "missing_sku"),
        (
            {"action": "update_quantity", "sku": "milk-001", "quantity": 1},
            "not_in_cart",
        ),
        ({"action": "update_quantity", "sku": "milk-001"}, "missing_params"),
        ({"action": "empty"}, "unknown_action"),
        ({"sku": "milk-001"}, "missing_params"),
    ],
)
async def test_cart_rejections(
    client: MerchantClient, operation: dict[str, Any], reason: str
) -> None:
    """An operation the merchant cannot apply returns ok false with the reason."""
    response = await client.cart(operation)

    assert response == {"ok": False, "reason": reason}
    assert await client.cart_items() == []


async def test_cart_missing_session_id(client: MerchantClient) -> None:
    """An operation without a session_id returns missing_params."""
    body = encode({"action": "clear", "store_id": "store-1"})

    status, response = await client.send("POST", "/webhooks/cart", body, sign(body))

    assert status == 200
    assert response == {"ok": False, "reason": "missing_params"}


async def test_cart_remove_deletes_line(client: MerchantClient) -> None:
    """Removing a product in the cart deletes its line and keeps the others."""
    client.merchant.seed_cart(SESSION, {"milk-001": 1, "хліб-001": 2})

    response = await client.cart({"action": "remove", "sku": "milk-001"})

    assert response == {"ok": True}
    assert [item["sku"] for item in await client.cart_items()] == ["хліб-001"]


async def test_cart_update_quantity_sets_quantity(client: MerchantClient) -> None:
    """update_quantity sets the new absolute quantity."""
    client.merchant.seed_cart(SESSION, {"milk-001": 3})

    response = await client.cart(
        {"action": "update_quantity", "sku": "milk-001", "quantity": 5}
    )

    assert response == {"ok": True}
    [item] = await client.cart_items()
    assert item["quantity"] == 5


async def test_cart_update_above_stock_rejected(client: MerchantClient) -> None:
    """update_quantity above the stock is rejected and keeps the old quantity."""
    client.merchant.seed_cart(SESSION, {"milk-001": 3})

    response = await client.cart(
        {"action": "update_quantity", "sku": "milk-001", "quantity": 100}
    )

    assert response == {"ok": False, "reason": "quantity_exceeded"}
    [item] = await client.cart_items()
    assert item["quantity"] == 3


async def test_cart_clear_empties_cart(client: MerchantClient) -> None:
    """clear empties the session's cart and leaves other sessions alone."""
    client.merchant.seed_cart(SESSION, {"milk-001": 1, "kefir-001": 1})
    client.merchant.seed_cart("other-user", {"milk-001": 1})

    response = await client.cart({"action": "clear"})

    assert response == {"ok": True}
    assert await client.cart_items() == []
    assert len(await client.cart_items("other-user")) == 1


async def test_cart_duplicate_request_id_applied_once(client: MerchantClient) -> None:
    """A retry with the same request id gets the same response and is not reapplied."""
    add = {"action": "add", "sku": "milk-001", "quantity": 1}
    request_id = str(uuid.uuid4())

    first = await client.cart(add, request_id)
    retry = await client.cart(add, request_id)

    assert first == {"ok": True}
    assert retry == first
    [item] = await client.cart_items()
    assert item["quantity"] == 1


async def test_cart_new_request_id_is_applied(client: MerchantClient) -> None:
    """The same operation under a new request id is a new operation."""
    add = {"action": "add", "sku": "milk-001", "quantity": 1}

    await client.cart(add, str(uuid.uuid4()))
    await client.cart(add, str(uuid.uuid4()))

    [item] = await client.cart_items()
    assert item["quantity"] == 2


async def test_cart_duplicate_rejection_repeated(client: MerchantClient) -> None:
    """A retried rejection is repeated even when the operation would now pass."""
    remove = {"action": "remove", "sku": "milk-001"}
    request_id = str(uuid.uuid4())

    first = await client.cart(remove, request_id)
    client.merchant.seed_cart(SESSION, {"milk-001": 1})
    retry = await client.cart(remove, request_id)

    assert first == {"ok": False, "reason": "not_in_cart"}
    assert retry == first
    assert len(await client.cart_items()) == 1


# --- cart GET ----------------------------------------------------------------


async def test_cart_get_returns_seeded_items(client: MerchantClient) -> None:
    """GET cart lists the seeded cart with catalog names, prices and units."""
    client.merchant.seed_cart(SESSION, {"kefir-001": 2, "apples-kg": 1.5})

    items = await client.cart_items()

    assert items == [
        {
            "sku": "kefir-001",
            "name": "Kefir 1% 900 g",
            "price": 52.0,
            "quantity": 2,
            "unit": "pcs",
            "promo_price": 42.0,
        },
        {
            "sku": "apples-kg",
            "name": "Golden apples",
            "price": 39.9,
            "quantity": 1.5,
            "unit": "kg",
        },
    ]


async def test_cart_get_unknown_session_is_empty(client: MerchantClient) -> None:
    """A session the merchant has never seen has an empty cart."""
    assert await client.cart_items("nobody") == []


async def test_cart_get_without_session_id_is_400(client: MerchantClient) -> None:
    """GET cart without the session_id parameter is a bad request."""
    status, response = await client.send("GET", "/webhooks/cart", b"", sign(b""))

    assert status == 400
    assert "session_id" in response["error"]


def test_seed_cart_unknown_sku_raises() -> None:
    """Seeding a SKU that is not in the catalog raises ValueError."""
    with pytest.raises(ValueError, match="no-such-sku"):
        SampleMerchant().seed_cart(SESSION, {"no-such-sku": 1})
