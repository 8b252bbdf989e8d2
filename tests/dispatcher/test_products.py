"""Tests for the products check: pricing search results through the merchant.

`check_products` runs against real HTTPS merchants on loopback with a TenantConfig
built in the test, so no database is involved. `parse_products_response` is tested
on raw bodies, because several cases (NaN, huge numbers, invalid UTF-8) cannot be
written as Python values and serialised.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from dispatcher.errors import WebhookInvalidResponse
from dispatcher.products import (
    CatalogProduct,
    PricedProduct,
    ProductsCheckRequest,
    ProductsCheckResult,
    check_products,
    parse_products_response,
)
from dispatcher.storage.repository import TenantConfig
from dispatcher.transport import Transport

if TYPE_CHECKING:
    from tests.conftest import Merchant, RecordedRequest, Responder

    StartMerchant = Callable[[Responder | None], Awaitable[Merchant]]

SECRET = "whsec-products-0123456789abcdef"
STORE_ID = "store-1"
IN_STOCK = {"price": 45.9, "in_stock": True}
FOUR_HUNDRED_DIGITS = "9" * 400

# --- helpers --------------------------------------------------------------


def tenant_config(
    url: str, *, timeout_seconds: float = 3.0, secret: str | None = SECRET
) -> TenantConfig:
    return TenantConfig(
        tenant_id="tenant-1",
        products_url=url,
        cart_url="",
        cart_get_url="",
        timeout_seconds=timeout_seconds,
        secret=secret,
        version=1,
    )


def check_request(*skus: str) -> ProductsCheckRequest:
    products = [CatalogProduct(sku=sku, name=f"Name of {sku}") for sku in skus]
    return ProductsCheckRequest(store_id=STORE_ID, products=products)


def requested_skus(request: RecordedRequest) -> list[str]:
    skus: list[str] = json.loads(request.body)["skus"]
    return skus


def reply_with(offers: dict[str, dict[str, Any]]) -> Responder:
    """Respond with the offer for each requested SKU found in `offers`."""

    def respond(request: RecordedRequest) -> web.StreamResponse:
        entries = [
            {"sku": sku, **offers[sku]}
            for sku in requested_skus(request)
            if sku in offers
        ]
        return web.json_response({"products": entries})

    return respond


def price_everything(request: RecordedRequest) -> web.StreamResponse:
    entries = [{"sku": sku, **IN_STOCK} for sku in requested_skus(request)]
    return web.json_response({"products": entries})


def reasons(result: ProductsCheckResult) -> dict[str, str]:
    return {item.sku: item.reason for item in result.unavailable}


def available_skus(result: ProductsCheckResult) -> list[str]:
    return [product["sku"] for product in result.products]


def products_body(*entries: str) -> bytes:
    """Build a raw products body from raw JSON entry texts."""
    return ('{"products":[' + ",".join(entries) + "]}").encode()


# --- fixtures -------------------------------------------------------------


@pytest.fixture
async def transport(make_settings: Callable[..., Any]) -> AsyncIterator[Transport]:
    transport = Transport(make_settings())
    await transport.start()
    yield transport
    await transport.close()


@pytest.fixture
async def release(start_merchant: StartMerchant) -> AsyncIterator[asyncio.Event]:
    """Event that hanging handlers wait on, set before the merchants shut down."""
    event = asyncio.Event()
    yield event
    event.set()
    await asyncio.sleep(0)


# --- check_products: filtering --------------------------------------------


async def test_in_stock_product_is_available_with_price(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """An in-stock SKU comes back with the merchant's price."""
    merchant = await start_merchant(reply_with({"milk": IN_STOCK}))
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request("milk"), batch_size=10
    )
    [product] = result.products
    assert product["sku"] == "milk"
    assert product["price"] == 45.9
    assert product["in_stock"] is True
    assert result.unavailable == []


async def test_out_of_stock_is_unavailable(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """in_stock false makes the SKU unavailable as out_of_stock."""
    merchant = await start_merchant(
        reply_with({"milk": {"price": 45.9, "in_stock": False}})
    )
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request("milk"), batch_size=10
    )
    assert result.products == []
    assert reasons(result) == {"milk": "out_of_stock"}


async def test_missing_sku_is_not_returned(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A requested SKU absent from the response is unavailable as not_returned."""
    merchant = await start_merchant(reply_with({"milk": IN_STOCK}))
    result = await check_products(
        transport,
        tenant_config(merchant.url()),
        check_request("milk", "bread"),
        batch_size=10,
    )
    assert available_skus(result) == ["milk"]
    assert reasons(result) == {"bread": "not_returned"}


async def test_invalid_entry_is_unavailable(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """An invalid entry makes only its own SKU unavailable as invalid_entry."""
    merchant = await start_merchant(
        reply_with({"milk": IN_STOCK, "bread": {"price": "10", "in_stock": True}})
    )
    result = await check_products(
        transport,
        tenant_config(merchant.url()),
        check_request("milk", "bread"),
        batch_size=10,
    )
    assert available_skus(result) == ["milk"]
    assert reasons(result) == {"bread": "invalid_entry"}


async def test_promo_fields_pass_through(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """promo_price and promo_label reach the output unchanged."""
    offer = {
        "price": 52.0,
        "in_stock": True,
        "promo_price": 42.0,
        "promo_label": "-19%",
    }
    merchant = await start_merchant(reply_with({"milk": offer}))
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request("milk"), batch_size=10
    )
    [product] = result.products
    assert product["promo_price"] == 42.0
    assert product["promo_label"] == "-19%"


async def test_absent_promo_fields_are_none(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Without promo fields the output has promo_price and promo_label None."""
    merchant = await start_merchant(reply_with({"milk": IN_STOCK}))
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request("milk"), batch_size=10
    )
    [product] = result.products
    assert product["promo_price"] is None
    assert product["promo_label"] is None


async def test_output_keeps_input_order(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Available and unavailable lists follow the order of the input products."""

    def respond(request: RecordedRequest) -> web.StreamResponse:
        # The merchant lists its entries in reverse order of the request.
        skus = requested_skus(request)
        entries = [
            {"sku": sku, "price": 10, "in_stock": not sku.startswith("gone")}
            for sku in reversed(skus)
        ]
        return web.json_response({"products": entries})

    merchant = await start_merchant(respond)
    result = await check_products(
        transport,
        tenant_config(merchant.url()),
        check_request("c", "gone-2", "a", "gone-1", "b"),
        batch_size=10,
    )
    assert available_skus(result) == ["c", "a", "b"]
    assert [item.sku for item in result.unavailable] == ["gone-2", "gone-1"]


async def test_catalog_fields_pass_through(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Catalog fields of the input product stay in the output beside the price."""
    merchant = await start_merchant(reply_with({"milk": IN_STOCK}))
    catalog = CatalogProduct(
        sku="milk", name="Milk 2.5%", brand="Farm", category_path=["Dairy", "Milk"]
    )
    request = ProductsCheckRequest(store_id=STORE_ID, products=[catalog])
    result = await check_products(
        transport, tenant_config(merchant.url()), request, batch_size=10
    )
    [product] = result.products
    assert product["name"] == "Milk 2.5%"
    assert product["brand"] == "Farm"
    assert product["category_path"] == ["Dairy", "Milk"]


async def test_request_body_names_skus_and_store(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """The merchant receives {"skus": [...], "store_id": ...} in input order."""
    merchant = await start_merchant(price_everything)
    await check_products(
        transport,
        tenant_config(merchant.url()),
        check_request("b", "a"),
        batch_size=10,
    )
    [request] = merchant.requests
    assert json.loads(request.body) == {"skus": ["b", "a"], "store_id": STORE_ID}


async def test_unicode_skus_round_trip(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Cyrillic and emoji SKUs are sent as UTF-8 and matched in the response."""
    merchant = await start_merchant(price_everything)
    skus = ("молоко-001", "🥛-2")
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request(*skus), batch_size=10
    )
    assert requested_skus(merchant.requests[0]) == list(skus)
    assert available_skus(result) == list(skus)


# --- check_products: batching ---------------------------------------------


async def test_batches_split_10_10_5(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """With batch_size 10, 25 SKUs are sent as three requests of 10, 10 and 5."""
    merchant = await start_merchant(price_everything)
    skus = [f"sku-{index:02d}" for index in range(25)]
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request(*skus), batch_size=10
    )
    sizes = sorted(len(requested_skus(request)) for request in merchant.requests)
    assert sizes == [5, 10, 10]
    assert available_skus(result) == skus


async def test_batches_are_sent_concurrently(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """All three batches are in flight at the same time."""
    in_flight = 0
    peak = 0
    all_arrived = asyncio.Event()

    async def respond(request: RecordedRequest) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 3:
            all_arrived.set()
        try:
            # Sequential batches would each wait the full 2 s here, then fail below.
            await asyncio.wait_for(all_arrived.wait(), timeout=2.0)
        except TimeoutError:
            pass
        finally:
            in_flight -= 1
        return price_everything(request)

    merchant = await start_merchant(respond)
    skus = [f"sku-{index:02d}" for index in range(25)]
    await check_products(
        transport, tenant_config(merchant.url()), check_request(*skus), batch_size=10
    )
    assert peak == 3


async def test_failed_batch_affects_only_its_skus(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A batch that gets a 500 makes only its own SKUs webhook_error."""

    def respond(request: RecordedRequest) -> web.StreamResponse:
        if "sku-12" in requested_skus(request):
            return web.Response(status=500)
        return price_everything(request)

    merchant = await start_merchant(respond)
    skus = [f"sku-{index:02d}" for index in range(25)]
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request(*skus), batch_size=10
    )
    failed_batch = skus[10:20]
    assert reasons(result) == dict.fromkeys(failed_batch, "webhook_error")
    assert available_skus(result) == skus[:10] + skus[20:]


# --- check_products: call failures ----------------------------------------


async def test_timeout_marks_webhook_timeout(
    transport: Transport, start_merchant: StartMerchant, release: asyncio.Event
) -> None:
    """A merchant slower than the timeout makes every SKU webhook_timeout."""

    async def respond(request: RecordedRequest) -> web.StreamResponse:
        await release.wait()
        return price_everything(request)

    merchant = await start_merchant(respond)
    result = await check_products(
        transport,
        tenant_config(merchant.url(), timeout_seconds=0.5),
        check_request("milk", "bread"),
        batch_size=10,
    )
    assert result.products == []
    assert reasons(result) == {"milk": "webhook_timeout", "bread": "webhook_timeout"}


async def test_huge_negative_price_is_invalid_entry(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A negative 400-digit price makes only its SKU invalid_entry."""

    def respond(_request: RecordedRequest) -> web.StreamResponse:
        body = products_body(
            '{"sku":"milk","price":10,"in_stock":true}',
            f'{{"sku":"bread","price":-{FOUR_HUNDRED_DIGITS},"in_stock":true}}',
        )
        return web.Response(body=body, content_type="application/json")

    merchant = await start_merchant(respond)
    result = await check_products(
        transport,
        tenant_config(merchant.url()),
        check_request("milk", "bread"),
        batch_size=10,
    )
    assert available_skus(result) == ["milk"]
    assert reasons(result) == {"bread": "invalid_entry"}


async def test_invalid_body_marks_webhook_error(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """A 200 whose body is not a products object makes every SKU webhook_error."""
    merchant = await start_merchant(lambda _request: web.Response(text="<html/>"))
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request("milk"), batch_size=10
    )
    assert reasons(result) == {"milk": "webhook_error"}


async def test_unconfigured_url_sends_nothing(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """Without a products URL every SKU is not_configured."""
    result = await check_products(
        transport, tenant_config(""), check_request("milk", "bread"), batch_size=10
    )
    assert result.products == []
    assert reasons(result) == {"milk": "not_configured", "bread": "not_configured"}


async def test_empty_request_sends_nothing(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """An empty product list returns empty results without a request."""
    merchant = await start_merchant(price_everything)
    result = await check_products(
        transport, tenant_config(merchant.url()), check_request(), batch_size=10
    )
    assert result.products == []
    assert result.unavailable == []
    assert merchant.requests == []


async def test_missing_secret_sends_nothing(
    transport: Transport, start_merchant: StartMerchant
) -> None:
    """With a URL but no secret every SKU is not_configured and no request is sent."""
    merchant = await start_merchant(price_everything)
    result = await check_products(
        transport,
        tenant_config(merchant.url(), secret=None),
        check_request("milk"),
        batch_size=10,
    )
    assert reasons(result) == {"milk": "not_configured"}
    assert merchant.requests == []


# --- parse_products_response: entries -------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param('"price":"10","in_stock":true', id="price-string"),
        pytest.param('"price":0,"in_stock":true', id="price-zero"),
        pytest.param('"price":-1,"in_stock":true', id="price-negative"),
        pytest.param('"price":1e400,"in_stock":true', id="price-1e400"),
        pytest.param(
            f'"price":{FOUR_HUNDRED_DIGITS},"in_stock":true', id="price-400-digits"
        ),
        pytest.param(
            f'"price":-{FOUR_HUNDRED_DIGITS},"in_stock":true',
            id="price-negative-400-digits",
        ),
        pytest.param('"price":true,"in_stock":true', id="price-true"),
        pytest.param('"price":NaN,"in_stock":true', id="price-nan"),
        pytest.param('"price":Infinity,"in_stock":true', id="price-infinity"),
        pytest.param('"price":-Infinity,"in_stock":true', id="price-minus-infinity"),
        pytest.param(
            '"price":' + "9" * 5000 + ',"in_stock":true', id="price-5000-digits"
        ),
        pytest.param('"price":10,"in_stock":true,"promo_price":NaN', id="promo-nan"),
        pytest.param('"price":null,"in_stock":true', id="price-null"),
        pytest.param('"in_stock":true', id="price-missing"),
        pytest.param('"price":10,"in_stock":"true"', id="in-stock-string"),
        pytest.param('"price":10,"in_stock":1', id="in-stock-one"),
        pytest.param('"price":10', id="in-stock-missing"),
        pytest.param('"price":10,"in_stock":true,"promo_price":"5"', id="promo-string"),
        pytest.param('"price":10,"in_stock":true,"promo_price":0', id="promo-zero"),
        pytest.param(
            '"price":10,"in_stock":true,"promo_price":-5', id="promo-negative"
        ),
        pytest.param(
            '"price":10,"in_stock":true,"promo_price":1e400', id="promo-1e400"
        ),
        pytest.param('"price":10,"in_stock":true,"promo_price":true', id="promo-true"),
        pytest.param(
            f'"price":10,"in_stock":true,"promo_price":-{FOUR_HUNDRED_DIGITS}',
            id="promo-negative-400-digits",
        ),
        pytest.param(
            '"price":10,"in_stock":true,"promo_label":"' + "x" * 101 + '"',
            id="label-101-chars",
        ),
        pytest.param('"price":10,"in_stock":true,"promo_label":5', id="label-number"),
        pytest.param(
            '"price":10,"in_stock":true,"promo_label":["x"]', id="label-array"
        ),
    ],
)
def test_invalid_entry_field(fields: str) -> None:
    """An entry with an invalid field is recorded as invalid for its SKU."""
    result = parse_products_response(products_body('{"sku":"a",' + fields + "}"), {"a"})
    assert "a" in result
    assert not isinstance(result["a"], PricedProduct)


@pytest.mark.parametrize(
    ("fields", "price"),
    [
        pytest.param('"price":10,"in_stock":true', 10.0, id="integer-price"),
        pytest.param('"price":45.9,"in_stock":false', 45.9, id="out-of-stock"),
        pytest.param(
            '"price":1.7976931348623157e308,"in_stock":true',
            1.7976931348623157e308,
            id="max-double",
        ),
        pytest.param(
            '"price":10,"in_stock":true,"promo_price":null', 10.0, id="promo-null"
        ),
        pytest.param(
            '"price":10,"in_stock":true,"promo_label":"' + "x" * 100 + '"',
            10.0,
            id="label-100-chars",
        ),
    ],
)
def test_valid_entry_field(fields: str, price: float) -> None:
    """A valid entry parses to a PricedProduct with its price."""
    result = parse_products_response(products_body('{"sku":"a",' + fields + "}"), {"a"})
    entry = result["a"]
    assert isinstance(entry, PricedProduct)
    assert entry.price == price


def test_valid_entry_keeps_promo_fields() -> None:
    """promo_price and promo_label are parsed from a valid entry."""
    body = products_body(
        '{"sku":"a","price":52,"in_stock":true,"promo_price":42,"promo_label":"-19%"}'
    )
    entry = parse_products_response(body, {"a"})["a"]
    assert isinstance(entry, PricedProduct)
    assert entry.promo_price == 42.0
    assert entry.promo_label == "-19%"


@pytest.mark.parametrize("entry", ['"a"', "5", "null", '["a"]', "true"])
def test_non_object_entry_is_skipped(entry: str) -> None:
    """An entry that is not an object is skipped, and later entries still count."""
    body = products_body(entry, '{"sku":"a","price":10,"in_stock":true}')
    result = parse_products_response(body, {"a"})
    assert isinstance(result["a"], PricedProduct)


def test_unrequested_sku_is_ignored() -> None:
    """An entry for a SKU that was not requested is left out."""
    body = products_body(
        '{"sku":"a","price":10,"in_stock":true}',
        '{"sku":"zzz","price":10,"in_stock":true}',
    )
    assert set(parse_products_response(body, {"a"})) == {"a"}


def test_non_string_sku_is_ignored() -> None:
    """An entry whose sku is not a string matches no requested SKU."""
    body = products_body('{"sku":5,"price":10,"in_stock":true}')
    assert parse_products_response(body, {"5"}) == {}


def test_duplicate_sku_first_valid_wins() -> None:
    """For a SKU listed twice the first, valid entry counts over a later invalid one."""
    body = products_body(
        '{"sku":"a","price":10,"in_stock":true}',
        '{"sku":"a","price":"oops","in_stock":true}',
    )
    entry = parse_products_response(body, {"a"})["a"]
    assert isinstance(entry, PricedProduct)
    assert entry.price == 10.0


def test_duplicate_sku_first_invalid_wins() -> None:
    """For a SKU listed twice the first, invalid entry counts over a later valid one."""
    body = products_body(
        '{"sku":"a","price":"oops","in_stock":true}',
        '{"sku":"a","price":10,"in_stock":true}',
    )
    entry = parse_products_response(body, {"a"})["a"]
    assert not isinstance(entry, PricedProduct)


def test_duplicate_sku_first_price_wins() -> None:
    """For a SKU listed twice with two valid entries the first price counts."""
    body = products_body(
        '{"sku":"a","price":10,"in_stock":true}',
        '{"sku":"a","price":20,"in_stock":false}',
    )
    entry = parse_products_response(body, {"a"})["a"]
    assert isinstance(entry, PricedProduct)
    assert entry.price == 10.0
    assert entry.in_stock is True


def test_unicode_skus_parse() -> None:
    """Cyrillic and emoji SKUs in a UTF-8 body match the requested SKUs."""
    body = json.dumps(
        {
            "products": [
                {"sku": "молоко-001", "price": 45.9, "in_stock": True},
                {"sku": "🥛-2", "price": 12, "in_stock": True},
            ]
        },
        ensure_ascii=False,
    ).encode()
    result = parse_products_response(body, {"молоко-001", "🥛-2"})
    assert set(result) == {"молоко-001", "🥛-2"}
    assert all(isinstance(entry, PricedProduct) for entry in result.values())


# --- parse_products_response: whole body ----------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b'"products"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="products-missing"),
        pytest.param(b'{"products":{}}', id="products-object"),
        pytest.param(b'{"products":null}', id="products-null"),
        pytest.param(b'{"products":"[]"}', id="products-string"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"products":[]} {}', id="trailing-data"),
        pytest.param(b'{"products":[],"note":"\xff"}', id="invalid-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000"),
        pytest.param(
            b'{"products":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            id="nested-in-products",
        ),
        pytest.param(
            b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
            id="html",
        ),
    ],
)
def test_invalid_body_raises(body: bytes) -> None:
    """A body that is not valid JSON with a products array raises."""
    with pytest.raises(WebhookInvalidResponse):
        parse_products_response(body, {"a"})
