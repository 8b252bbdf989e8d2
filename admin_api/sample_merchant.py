"""An example merchant backend: the three webhooks that VIZOCHOK calls.

VIZOCHOK keeps a shop's catalog for search, but fetches everything that changes by
the minute from the shop's own backend. A merchant implements three HTTPS endpoints:

- ``POST products_url`` receives ``{"skus": [...], "store_id": "..."}`` with the
  SKUs that search found (1 to 10 per request). Return ``{"products": [...]}`` with
  ``sku``, ``price`` and ``in_stock`` for every SKU you sell, and optionally
  ``promo_price`` and ``promo_label``. Leave out SKUs you do not know, because
  VIZOCHOK treats a missing SKU as unavailable.
- ``POST cart_url`` receives one cart operation (``add``, ``remove``,
  ``update_quantity`` or ``clear``) for a ``session_id``. Apply it to your cart and
  return ``{"ok": true}``, or ``{"ok": false, "reason": "out_of_stock"}`` when you
  reject it. The assistant passes the reason on to the customer unchanged.
- ``GET cart_get_url?store_id=...&session_id=...`` returns the customer's current
  cart as ``{"items": [...]}``. VIZOCHOK reads it once when a conversation starts.

Every request is signed. Check ``X-VIZOCHOK-Signature`` against the raw body bytes
before parsing them, and reject a ``X-VIZOCHOK-Timestamp`` more than 300 seconds
from your clock (`dispatcher.signing.verify_signature` does both). A retried cart
operation carries the same ``X-VIZOCHOK-Request-Id`` as the first attempt, so
remember recent ids and return the stored result instead of applying it twice.

This sample keeps its catalog, carts and request ids in memory, which is enough for
`vizochok demo` and the tests. A real backend keeps them in its own database.
"""

from __future__ import annotations

import json
import math
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeGuard

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from dispatcher.signing import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

log = structlog.get_logger("admin_api.sample_merchant")

PRODUCTS_PATH = "/webhooks/products"
CART_PATH = "/webhooks/cart"
LOOPBACK_HOST = "127.0.0.1"

# The platform retries a cart operation once, about a second after the first
# attempt, so results of the most recent operations are enough to catch duplicates.
MAX_REMEMBERED_REQUESTS = 1000

CartResult = dict[str, Any]


@dataclass(frozen=True)
class Product:
    """A catalog entry as the merchant's own system stores it."""

    sku: str
    name: str
    price: float
    # Units on hand, or kilograms for goods sold by weight.
    stock: float
    unit: str = "pcs"
    promo_price: float | None = None
    promo_label: str | None = None


SAMPLE_CATALOG = (
    Product("milk-001", "Milk 2.5% 900 ml", 45.90, stock=24),
    Product(
        "kefir-001",
        "Kefir 1% 900 g",
        52.00,
        stock=12,
        promo_price=42.00,
        promo_label="-19%",
    ),
    Product("yogurt-001", "Strawberry yogurt 250 g", 38.50, stock=0),
    # A SKU may be any UTF-8 string. The signature covers the UTF-8 bytes as sent.
    Product("хліб-001", "Хліб житній", 32.00, stock=15),
    Product("apples-kg", "Golden apples", 39.90, stock=40.5, unit="kg"),
)


@dataclass
class CartLine:
    """One product in a customer's cart, priced when it was added."""

    sku: str
    name: str
    price: float
    promo_price: float | None
    quantity: float
    unit: str

    @classmethod
    def from_product(cls, product: Product, quantity: float) -> CartLine:
        return cls(
            sku=product.sku,
            name=product.name,
            price=product.price,
            promo_price=product.promo_price,
            quantity=quantity,
            unit=product.unit,
        )

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "sku": self.sku,
            "name": self.name,
            "price": self.price,
            "quantity": self.quantity,
            "unit": self.unit,
        }
        if self.promo_price is not None:
            item["promo_price"] = self.promo_price
        return item


Cart = dict[str, CartLine]


class SampleMerchant:
    """The merchant's state: catalog, one cart per session, and the webhook secret.

    The secret starts unset, because the platform generates it when the admin
    first saves the webhook URLs, after this backend is already running. Until
    `set_secret` is called, every request is rejected as unsigned.
    """

    def __init__(self, catalog: Iterable[Product] = SAMPLE_CATALOG) -> None:
        self.catalog = {product.sku: product for product in catalog}
        # Keyed by session_id only: this shop has one store, so store_id is ignored.
        self.carts: dict[str, Cart] = {}
        self._secret: str | None = None
        self._results: OrderedDict[str, CartResult] = OrderedDict()
        self._actions: dict[str, Callable[[Cart, dict[str, Any]], CartResult]] = {
            "add": self._add,
            "remove": self._remove,
            "update_quantity": self._update_quantity,
            "clear": self._clear,
        }

    def set_secret(self, secret: str) -> None:
        """Store the secret that the admin copied from the PATCH response."""
        self._secret = secret

    def verify(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        if self._secret is None:
            return False
        return verify_signature(self._secret, body, timestamp, signature)

    def seed_cart(self, session_id: str, quantities: Mapping[str, float]) -> None:
        """Replace a session's cart, as if the customer had filled it on the website.

        Raises ValueError for a SKU that is not in the catalog.
        """
        unknown = [sku for sku in quantities if sku not in self.catalog]
        if unknown:
            raise ValueError(f"cannot seed SKUs missing from the catalog: {unknown}")
        self.carts[session_id] = {
            sku: CartLine.from_product(self.catalog[sku], quantity)
            for sku, quantity in quantities.items()
        }

    def cart_items(self, session_id: str) -> list[dict[str, Any]]:
        return [line.to_json() for line in self.carts.get(session_id, {}).values()]

    def offers(self, skus: Iterable[str]) -> list[dict[str, Any]]:
        """Return price and stock for each known SKU, leaving unknown ones out."""
        known = [
            self.catalog[sku] for sku in dict.fromkeys(skus) if sku in self.catalog
        ]
        return [_offer(product) for product in known]

    def apply_once(
        self, request_id: str | None, operation: dict[str, Any]
    ) -> CartResult:
        """Apply a cart operation unless its request id was already applied.

        A duplicate gets the stored result again. The platform sends one when the
        first attempt was applied here but its response was lost to a timeout.
        Nothing awaits between the lookup and the store, so concurrent duplicates
        on the event loop cannot both apply.
        """
        if request_id is not None and request_id in self._results:
            return self._results[request_id]

        result = self.apply(operation)

        if request_id is not None:
            self._results[request_id] = result
            if len(self._results) > MAX_REMEMBERED_REQUESTS:
                self._results.popitem(last=False)
        return result

    def apply(self, operation: dict[str, Any]) -> CartResult:
        action = operation.get("action")
        session_id = operation.get("session_id")
        if not isinstance(action, str) or not _is_text(session_id):
            return _rejected("missing_params")

        handler = self._actions.get(action)
        if handler is None:
            return _rejected("unknown_action")
        return handler(self.carts.setdefault(session_id, {}), operation)

    def _add(self, cart: Cart, operation: dict[str, Any]) -> CartResult:
        # The request also carries the name and price the customer saw. This shop
        # is the source of truth, so it charges its own current catalog price.
        sku = operation.get("sku")
        quantity = operation.get("quantity")
        if not _is_text(sku):
            return _rejected("missing_sku")
        if quantity is None:
            return _rejected("missing_params")
        if not _is_quantity(quantity):
            return _rejected("invalid_quantity")

        product = self.catalog.get(sku)
        if product is None:
            return _rejected("product_not_found")
        line = cart.get(sku)
        total = quantity + (line.quantity if line is not None else 0)
        stock_reason = _stock_reason(product, total)
        if stock_reason is not None:
            return _rejected(stock_reason)

        if line is None:
            cart[sku] = CartLine.from_product(product, quantity)
        else:
            line.quantity = total
        return _accepted()

    def _remove(self, cart: Cart, operation: dict[str, Any]) -> CartResult:
        sku = operation.get("sku")
        if not _is_text(sku):
            return _rejected("missing_sku")
        if sku not in cart:
            return _rejected("not_in_cart")
        del cart[sku]
        return _accepted()

    def _update_quantity(self, cart: Cart, operation: dict[str, Any]) -> CartResult:
        # `quantity` is the new absolute quantity, not a difference.
        sku = operation.get("sku")
        quantity = operation.get("quantity")
        if not _is_text(sku):
            return _rejected("missing_sku")
        if quantity is None:
            return _rejected("missing_params")
        if not _is_quantity(quantity):
            return _rejected("invalid_quantity")

        line = cart.get(sku)
        if line is None:
            return _rejected("not_in_cart")
        stock_reason = _stock_reason(self.catalog[sku], quantity)
        if stock_reason is not None:
            return _rejected(stock_reason)

        line.quantity = quantity
        return _accepted()

    def _clear(self, cart: Cart, _operation: dict[str, Any]) -> CartResult:
        cart.clear()
        return _accepted()


def _offer(product: Product) -> dict[str, Any]:
    offer: dict[str, Any] = {
        "sku": product.sku,
        "price": product.price,
        "in_stock": product.stock > 0,
    }
    # Promotion fields are optional: send them only when there is a promotion.
    if product.promo_price is not None:
        offer["promo_price"] = product.promo_price
    if product.promo_label is not None:
        offer["promo_label"] = product.promo_label
    return offer


def _stock_reason(product: Product, quantity: float) -> str | None:
    if product.stock <= 0:
        return "out_of_stock"
    if quantity > product.stock:
        return "quantity_exceeded"
    return None


def _accepted() -> CartResult:
    return {"ok": True}


def _rejected(reason: str) -> CartResult:
    return {"ok": False, "reason": reason}


def _is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _is_quantity(value: object) -> TypeGuard[int | float]:
    # JSON true is not 1, and fractions are allowed for goods sold by weight.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # math.isfinite would overflow on a huge JSON integer, and integers are finite.
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return value > 0


# --- HTTP -------------------------------------------------------------------

MERCHANT = web.AppKey("merchant", SampleMerchant)


@web.middleware
async def require_signature(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Reject any request whose signature does not match its raw body.

    The check runs before the body is parsed, so a forged request never reaches
    the cart. A GET is signed over an empty body.
    """
    body = await request.read()
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not request.app[MERCHANT].verify(body, timestamp, signature):
        return _rejected_request(request, 401, "invalid signature")
    return await handler(request)


async def products_webhook(request: web.Request) -> web.Response:
    payload = await _json_object(request)
    skus = payload.get("skus") if payload is not None else None
    if not isinstance(skus, list) or not all(isinstance(sku, str) for sku in skus):
        return _rejected_request(
            request, 400, "the body must be a JSON object with a 'skus' array"
        )

    return web.json_response({"products": request.app[MERCHANT].offers(skus)})


async def cart_webhook(request: web.Request) -> web.Response:
    payload = await _json_object(request)
    if payload is None:
        return _rejected_request(
            request, 400, "the body must be a JSON object with an 'action' field"
        )

    request_id = request.headers.get(REQUEST_ID_HEADER)
    return web.json_response(request.app[MERCHANT].apply_once(request_id, payload))


async def cart_get_webhook(request: web.Request) -> web.Response:
    session_id = request.query.get("session_id")
    if not session_id:
        return _rejected_request(
            request, 400, "the session_id query parameter is required"
        )

    return web.json_response({"items": request.app[MERCHANT].cart_items(session_id)})


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        payload = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _rejected_request(request: web.Request, status: int, message: str) -> web.Response:
    # The path only: the query contains the customer's session_id.
    log.warning(
        "sample_merchant.request_rejected",
        method=request.method,
        path=request.path,
        status=status,
        error=message,
    )
    return web.json_response({"error": message}, status=status)


def create_merchant_app(merchant: SampleMerchant) -> web.Application:
    """Build the merchant's web application around its state."""
    app = web.Application(middlewares=[require_signature])
    app[MERCHANT] = merchant
    app.router.add_post(PRODUCTS_PATH, products_webhook)
    app.router.add_post(CART_PATH, cart_webhook)
    app.router.add_get(CART_PATH, cart_get_webhook)
    return app


@asynccontextmanager
async def serve_merchant(
    merchant: SampleMerchant, ssl_context: ssl.SSLContext
) -> AsyncIterator[str]:
    """Serve the merchant over HTTPS on a free loopback port and yield its base URL.

    The server stops when the context exits.
    """
    runner = web.AppRunner(
        create_merchant_app(merchant), handle_signals=False, access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK_HOST, 0, ssl_context=ssl_context)
        await site.start()
        port: int = runner.addresses[0][1]
        yield f"https://{LOOPBACK_HOST}:{port}"
    finally:
        await runner.cleanup()
