"""Cart operations, the session cart, and the merchant's cart responses.

The merchant is the source of truth for the cart: every change goes to its cart
webhook first, and the platform's session cart changes only after the merchant
returned `{"ok": true}`. This module contains the pure parts: validating an
operation, the body sent, parsing the response, and applying a confirmed change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dispatcher.errors import WebhookInvalidResponse
from dispatcher.jsonbody import is_number_within, load_json_body

# A merchant's reason is passed to the assistant unchanged, but cut to this many
# characters so a hostile merchant cannot flood the conversation.
MAX_REASON_LENGTH = 200
# Cart GET responses beyond this many items are skipped and counted.
MAX_CART_ITEMS = 500

# Sanity bounds for one cart line, far beyond any real basket. A line then costs
# at most 1e12, and a cart of MAX_CART_ITEMS lines at most 5e14 (the float a
# total is returned as represents cents exactly up to about 9e13, so only absurd carts
# lose a cent). The lower bounds reject denormals such as 5e-324.
MIN_QUANTITY = 0.001
MAX_QUANTITY = 100_000
MIN_PRICE = 0.01
MAX_PRICE = 10_000_000

Number = int | float
_CENT = Decimal("0.01")


def _finite(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


# Store, session and SKU ids: printable text. Control characters (NUL above all,
# which PostgreSQL cannot store in text) are never part of a real id.
IDENTIFIER_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_Identifier = Annotated[
    str, Field(min_length=1, max_length=256, pattern=IDENTIFIER_PATTERN)
]
# int | float keeps a JSON integer an integer in the body sent to the merchant.
_Quantity = Annotated[
    Number, Field(ge=MIN_QUANTITY, le=MAX_QUANTITY), AfterValidator(_finite)
]
_Price = Annotated[Number, Field(ge=MIN_PRICE, le=MAX_PRICE), AfterValidator(_finite)]


def _zero_or_quantity(value: Number) -> Number:
    if value != 0 and not MIN_QUANTITY <= value <= MAX_QUANTITY:
        raise ValueError(f"must be 0 or between {MIN_QUANTITY} and {MAX_QUANTITY}")
    return value


# update_quantity also takes 0, which removes the item.
_NewQuantity = Annotated[
    Number, Field(ge=0), AfterValidator(_finite), AfterValidator(_zero_or_quantity)
]


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    store_id: _Identifier
    session_id: _Identifier


class AddItem(_Operation):
    action: Literal["add"]
    sku: _Identifier
    name: Annotated[str, Field(max_length=500)]
    quantity: _Quantity
    price: _Price
    promo_price: _Price | None = None


class RemoveItem(_Operation):
    action: Literal["remove"]
    sku: _Identifier


class UpdateQuantity(_Operation):
    action: Literal["update_quantity"]
    sku: _Identifier
    # The new absolute quantity; 0 removes the item.
    quantity: _NewQuantity


class ClearCart(_Operation):
    action: Literal["clear"]


CartOperation = Annotated[
    AddItem | RemoveItem | UpdateQuantity | ClearCart, Field(discriminator="action")
]


class SessionStartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    store_id: _Identifier
    session_id: _Identifier


@dataclass(frozen=True)
class CartItem:
    sku: str
    name: str
    price: Number | None
    promo_price: Number | None
    quantity: Number
    unit: str = "pcs"

    def to_json(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "name": self.name,
            "price": self.price,
            "promo_price": self.promo_price,
            "quantity": self.quantity,
            "unit": self.unit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CartItem:
        return cls(
            sku=data["sku"],
            name=data.get("name", ""),
            price=data.get("price"),
            promo_price=data.get("promo_price"),
            quantity=data["quantity"],
            unit=data.get("unit", "pcs"),
        )


def cart_total(items: list[CartItem]) -> float:
    """Sum of (promo_price or price) * quantity, rounded half-up to cents.

    The sum is taken in decimal from each number's shortest repr, so 0.5 kg at
    10.03 totals 5.02 as a person would compute it. In binary floating point the
    product is 5.01499..., which would round down. An item seeded from the merchant
    without a price counts as zero.
    """
    total = sum(
        (
            Decimal(repr(item.promo_price or item.price or 0))
            * Decimal(repr(item.quantity))
            for item in items
        ),
        Decimal(0),
    )
    return float(total.quantize(_CENT, rounding=ROUND_HALF_UP))


def webhook_body(
    operation: AddItem | RemoveItem | UpdateQuantity | ClearCart,
) -> dict[str, Any]:
    """Return exactly the fields the contract sends for the operation's action."""
    body: dict[str, Any] = {
        "action": operation.action,
        "store_id": operation.store_id,
        "session_id": operation.session_id,
    }
    if isinstance(operation, AddItem):
        body.update(
            sku=operation.sku,
            name=operation.name,
            quantity=operation.quantity,
            price=operation.price,
        )
    elif isinstance(operation, RemoveItem):
        body["sku"] = operation.sku
    elif isinstance(operation, UpdateQuantity):
        body.update(sku=operation.sku, quantity=operation.quantity)
    return body


@dataclass(frozen=True)
class MerchantAnswer:
    ok: bool
    reason: str | None = None


def parse_cart_answer(body: bytes) -> MerchantAnswer:
    """Read `{"ok": true}` or `{"ok": false, "reason": "..."}`.

    Anything else, including `ok: false` without a string reason, raises
    WebhookInvalidResponse.
    """
    document = load_json_body(body)
    if not isinstance(document, dict) or not isinstance(document.get("ok"), bool):
        raise WebhookInvalidResponse("body is not an object with a boolean 'ok'")
    if document["ok"]:
        return MerchantAnswer(ok=True)
    reason = document.get("reason")
    if not isinstance(reason, str):
        raise WebhookInvalidResponse("'ok' is false but 'reason' is not a string")
    return MerchantAnswer(ok=False, reason=reason[:MAX_REASON_LENGTH])


ChangeAction = Literal[
    "item_selected", "item_removed", "quantity_updated", "cart_cleared"
]


@dataclass(frozen=True)
class CartChange:
    """A confirmed change, applied to the session cart."""

    action: ChangeAction
    items: list[CartItem]
    item: CartItem | None = None

    def to_event(self) -> dict[str, Any]:
        """Return the `cart_changed` event the widget receives."""
        event: dict[str, Any] = {"action": self.action}
        if self.item is not None:
            event.update(
                sku=self.item.sku,
                name=self.item.name,
                quantity=self.item.quantity,
                price=self.item.price,
            )
        event["items"] = [item.to_json() for item in self.items]
        event["total"] = cart_total(self.items)
        return event


class NotInCart(Exception):
    """The operation names a SKU the session cart does not hold."""


class QuantityExceeded(Exception):
    """An add would take the item's quantity past MAX_QUANTITY."""


def apply_operation(
    items: list[CartItem],
    operation: AddItem | RemoveItem | UpdateQuantity | ClearCart,
    *,
    strict: bool,
) -> CartChange:
    """Return the cart after a confirmed operation.

    An add past MAX_QUANTITY raises QuantityExceeded. With `strict` (the
    platform keeps the cart alone), removing or updating a SKU the cart lacks
    raises NotInCart. Otherwise the merchant, the source of truth,
    already accepted the change, so a missing SKU leaves the copy as it is.
    """
    if isinstance(operation, ClearCart):
        return CartChange("cart_cleared", [])
    if isinstance(operation, AddItem):
        return _add(items, operation)

    index = next((i for i, item in enumerate(items) if item.sku == operation.sku), None)
    if index is None:
        if strict:
            raise NotInCart(operation.sku)
        action: ChangeAction = (
            "item_removed" if isinstance(operation, RemoveItem) else "quantity_updated"
        )
        quantity = 0 if isinstance(operation, RemoveItem) else operation.quantity
        ghost = CartItem(operation.sku, "", None, None, quantity)
        return CartChange(action, list(items), ghost)

    current = items[index]
    if isinstance(operation, RemoveItem) or operation.quantity == 0:
        remaining = items[:index] + items[index + 1 :]
        removed = replace(current, quantity=0)
        action = (
            "item_removed" if isinstance(operation, RemoveItem) else "quantity_updated"
        )
        return CartChange(action, remaining, removed)

    updated = replace(current, quantity=operation.quantity)
    return CartChange(
        "quantity_updated", [*items[:index], updated, *items[index + 1 :]], updated
    )


def _add(items: list[CartItem], operation: AddItem) -> CartChange:
    for index, item in enumerate(items):
        if item.sku == operation.sku:
            if item.quantity + operation.quantity > MAX_QUANTITY:
                raise QuantityExceeded(operation.sku)
            # The newest add carries the price the platform last learned.
            merged = replace(
                item,
                name=operation.name,
                price=operation.price,
                promo_price=operation.promo_price,
                quantity=item.quantity + operation.quantity,
            )
            return CartChange(
                "item_selected", [*items[:index], merged, *items[index + 1 :]], merged
            )
    added = CartItem(
        operation.sku,
        operation.name,
        operation.price,
        operation.promo_price,
        operation.quantity,
    )
    return CartChange("item_selected", [*items, added], added)


@dataclass(frozen=True)
class SeededCart:
    items: list[CartItem]
    skipped: int


def parse_cart_get(body: bytes) -> SeededCart:
    """Parse a cart GET response, skipping and counting invalid or duplicate items.

    The body must be an object with an `items` array, else WebhookInvalidResponse.
    """
    document = load_json_body(body, invalid_numbers_as_nan=True)
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise WebhookInvalidResponse("body is not an object with an 'items' array")

    items: list[CartItem] = []
    seen: set[str] = set()
    skipped = 0
    for entry in document["items"]:
        item = _parse_cart_item(entry)
        if item is None or item.sku in seen or len(items) >= MAX_CART_ITEMS:
            skipped += 1
            continue
        seen.add(item.sku)
        items.append(item)
    return SeededCart(items, skipped)


def _parse_cart_item(entry: object) -> CartItem | None:
    if not isinstance(entry, dict):
        return None
    sku = entry.get("sku")
    quantity = entry.get("quantity")
    name = entry.get("name", "")
    price = entry.get("price")
    promo_price = entry.get("promo_price")
    unit = entry.get("unit", "pcs")

    if not isinstance(sku, str) or not sku or len(sku) > 256:
        return None
    if not is_number_within(quantity, MAX_QUANTITY):
        return None
    if not isinstance(name, str) or not isinstance(unit, str):
        return None
    if price is not None and not is_number_within(price, MAX_PRICE):
        return None
    if promo_price is not None and not is_number_within(promo_price, MAX_PRICE):
        return None
    return CartItem(
        sku=sku,
        name=name[:500],
        price=price,
        promo_price=promo_price,
        quantity=quantity,
        unit=unit[:32] or "pcs",
    )
