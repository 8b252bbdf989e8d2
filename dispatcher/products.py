"""The products check: live prices and stock for search results, then filtering.

Search finds candidate SKUs; the merchant's products webhook prices them. Only
products the merchant confirmed in stock, with a valid price, reach the customer.
Every other SKU is reported as unavailable with the reason.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.errors import CircuitOpen, WebhookError, WebhookInvalidResponse
from dispatcher.jsonbody import is_number_within, load_json_body
from dispatcher.signing import encode_body
from dispatcher.storage.repository import TenantConfig
from dispatcher.transport import Transport, WebhookCall

log = structlog.get_logger("dispatcher.products")

UnavailableReason = Literal[
    "out_of_stock",
    "not_returned",
    "invalid_entry",
    "webhook_timeout",
    "webhook_error",
    "not_configured",
    "circuit_open",
]

MAX_PROMO_LABEL_LENGTH = 100
_MAX_DOUBLE = sys.float_info.max


class CatalogProduct(BaseModel):
    """A search result: `sku` plus catalog fields that are passed through."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    sku: str = Field(min_length=1, max_length=256)


class ProductsCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    store_id: str = Field(min_length=1, max_length=256)
    products: list[CatalogProduct] = Field(max_length=1000)


class Unavailable(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    reason: UnavailableReason


class ProductsCheckResult(BaseModel):
    """Priced, in-stock products in input order, and every other SKU with why."""

    products: list[dict[str, Any]]
    unavailable: list[Unavailable]


@dataclass(frozen=True)
class PricedProduct:
    sku: str
    price: float
    in_stock: bool
    promo_price: float | None
    promo_label: str | None


class _Invalid:
    """Marks a SKU whose first entry in the merchant's response was invalid."""


_INVALID = _Invalid()
Verdict = PricedProduct | _Invalid | UnavailableReason


async def check_products(
    transport: Transport,
    config: TenantConfig,
    request: ProductsCheckRequest,
    *,
    batch_size: int,
) -> ProductsCheckResult:
    """Price `request.products` through the tenant's products webhook and filter.

    SKUs are sent in batches of at most `batch_size`, all batches at once; a failed
    batch makes only its own SKUs unavailable. Never raises for merchant failures.
    """
    skus = list(dict.fromkeys(product.sku for product in request.products))
    if not config.products_url or config.secret is None:
        verdicts: dict[str, Verdict] = dict.fromkeys(skus, "not_configured")
        return _assemble(request.products, verdicts)

    batches = [
        skus[start : start + batch_size] for start in range(0, len(skus), batch_size)
    ]
    results = await asyncio.gather(
        *(_check_batch(transport, config, request.store_id, batch) for batch in batches)
    )
    verdicts = {}
    for result in results:
        verdicts.update(result)
    return _assemble(request.products, verdicts)


def products_call(config: TenantConfig, store_id: str, skus: list[str]) -> WebhookCall:
    """Build the signed products request for one batch of SKUs."""
    assert config.secret is not None
    return WebhookCall(
        tenant_id=config.tenant_id,
        webhook="products",
        method="POST",
        url=config.products_url,
        body=encode_body({"skus": skus, "store_id": store_id}),
        secret=config.secret,
        timeout_seconds=config.timeout_seconds,
    )


async def _check_batch(
    transport: Transport, config: TenantConfig, store_id: str, skus: list[str]
) -> dict[str, Verdict]:
    call = products_call(config, store_id, skus)
    try:
        response = await transport.send(call)
        entries = parse_products_response(response.body, set(skus))
    except WebhookError as exc:
        reason: UnavailableReason = "webhook_error"
        if isinstance(exc, CircuitOpen):
            reason = "circuit_open"
        elif exc.timed_out_every_attempt:
            reason = "webhook_timeout"
        if isinstance(exc, WebhookInvalidResponse):
            log.warning(
                "products.invalid_response",
                tenant_id=config.tenant_id,
                host=call.host,
                request_id=call.request_id,
                error=str(exc),
            )
        return dict.fromkeys(skus, reason)

    invalid = sum(1 for entry in entries.values() if isinstance(entry, _Invalid))
    if invalid:
        log.warning(
            "products.invalid_entries",
            tenant_id=config.tenant_id,
            host=call.host,
            request_id=call.request_id,
            invalid_entries=invalid,
        )
    return {sku: entries.get(sku, "not_returned") for sku in skus}


def parse_products_response(
    body: bytes, requested: set[str]
) -> dict[str, PricedProduct | _Invalid]:
    """Validate a products response entry by entry.

    The body must be a JSON object with a `products` array, else
    WebhookInvalidResponse. Entries for SKUs that were not requested are ignored,
    and for a SKU listed twice the first entry counts, valid or not. NaN,
    Infinity and numbers beyond a double make only their entry invalid.
    """
    document = load_json_body(body, invalid_numbers_as_nan=True)
    if not isinstance(document, dict) or not isinstance(document.get("products"), list):
        raise WebhookInvalidResponse("body is not an object with a 'products' array")

    entries: dict[str, PricedProduct | _Invalid] = {}
    for entry in document["products"]:
        sku = entry.get("sku") if isinstance(entry, dict) else None
        if not isinstance(sku, str) or sku not in requested or sku in entries:
            continue
        entries[sku] = _parse_entry(sku, entry)
    return entries


def _parse_entry(sku: str, entry: dict[str, Any]) -> PricedProduct | _Invalid:
    price = entry.get("price")
    in_stock = entry.get("in_stock")
    promo_price = entry.get("promo_price")
    promo_label = entry.get("promo_label")

    if not is_number_within(price, _MAX_DOUBLE) or not isinstance(in_stock, bool):
        return _INVALID
    if promo_price is not None and not is_number_within(promo_price, _MAX_DOUBLE):
        return _INVALID
    if promo_label is not None and (
        not isinstance(promo_label, str) or len(promo_label) > MAX_PROMO_LABEL_LENGTH
    ):
        return _INVALID
    return PricedProduct(
        sku=sku,
        price=float(price),
        in_stock=in_stock,
        promo_price=None if promo_price is None else float(promo_price),
        promo_label=promo_label,
    )


def _assemble(
    products: Sequence[CatalogProduct], verdicts: dict[str, Verdict]
) -> ProductsCheckResult:
    available: list[dict[str, Any]] = []
    unavailable: list[Unavailable] = []
    for product in products:
        verdict = verdicts[product.sku]
        if isinstance(verdict, PricedProduct) and verdict.in_stock:
            available.append(_merge(product, verdict))
        elif isinstance(verdict, PricedProduct):
            unavailable.append(Unavailable(sku=product.sku, reason="out_of_stock"))
        elif isinstance(verdict, _Invalid):
            unavailable.append(Unavailable(sku=product.sku, reason="invalid_entry"))
        else:
            unavailable.append(Unavailable(sku=product.sku, reason=verdict))
    return ProductsCheckResult(products=available, unavailable=unavailable)


def _merge(product: CatalogProduct, priced: PricedProduct) -> dict[str, Any]:
    return {
        **product.model_dump(),
        "sku": priced.sku,
        "price": priced.price,
        "in_stock": True,
        "promo_price": priced.promo_price,
        "promo_label": priced.promo_label,
    }
