"""Unit tests of the pure cart functions: no network, no database.

`parse_cart_answer` and `parse_cart_get` are fed raw bytes, because several cases
(NaN, invalid UTF-8, HTML) cannot be written as Python values and serialised.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from dispatcher.cart import (
    MAX_CART_ITEMS,
    MAX_PRICE,
    MAX_QUANTITY,
    CartItem,
    CartOperation,
    MerchantAnswer,
    NotInCart,
    QuantityExceeded,
    apply_operation,
    cart_total,
    parse_cart_answer,
    parse_cart_get,
    webhook_body,
)
from dispatcher.errors import WebhookInvalidResponse

OPERATION: TypeAdapter[CartOperation] = TypeAdapter(CartOperation)
SESSION = {"store_id": "store-1", "session_id": "user-1"}


def operation(action: str, **fields: Any) -> Any:
    return OPERATION.validate_python({"action": action, **SESSION, **fields})


def add(sku: str, quantity: float = 1, price: float = 10.0, **fields: Any) -> Any:
    fields.setdefault("name", sku)
    return operation("add", sku=sku, quantity=quantity, price=price, **fields)


def item(sku: str, quantity: float = 1, price: float | None = 10.0) -> CartItem:
    return CartItem(sku=sku, name=sku, price=price, promo_price=None, quantity=quantity)


def seeded(entries: list[Any]) -> bytes:
    return json.dumps({"items": entries}, ensure_ascii=False).encode()


# --- apply_operation ------------------------------------------------------


def test_add_new_sku_appends():
    """Adding a SKU the cart lacks appends it with the operation's fields."""
    change = apply_operation(
        [item("a")], add("b", quantity=2, price=5, promo_price=4), strict=True
    )
    assert change.action == "item_selected"
    assert change.items == [
        item("a"),
        CartItem(sku="b", name="b", price=5, promo_price=4, quantity=2),
    ]
    assert change.item == change.items[1]


def test_add_existing_sku_sums_quantity():
    """Adding a SKU already held adds to its quantity instead of a second line."""
    change = apply_operation([item("a", quantity=2)], add("a", 0.5), strict=True)
    assert [line.sku for line in change.items] == ["a"]
    assert change.items[0].quantity == 2.5


def test_add_existing_sku_takes_newest_price():
    """A repeated add replaces name, price and promo price with the newest."""
    current = CartItem("a", "Old", price=10, promo_price=8, quantity=1)
    change = apply_operation(
        [current], add("a", price=12, name="New", promo_price=None), strict=True
    )
    assert change.items[0] == CartItem(
        "a", "New", price=12, promo_price=None, quantity=2
    )


def test_add_keeps_other_lines_in_place():
    """A merged add leaves the cart's order unchanged."""
    change = apply_operation([item("a"), item("b"), item("c")], add("b"), strict=True)
    assert [line.sku for line in change.items] == ["a", "b", "c"]


def test_apply_does_not_mutate_input():
    """The input list is left unchanged, because the result is a new list."""
    items = [item("a")]
    apply_operation(items, add("b"), strict=True)
    apply_operation(items, operation("remove", sku="a"), strict=True)
    assert items == [item("a")]


def test_remove_drops_line():
    """Removing a held SKU drops its line and reports it with quantity 0."""
    change = apply_operation(
        [item("a"), item("b")], operation("remove", sku="a"), strict=True
    )
    assert change.action == "item_removed"
    assert change.items == [item("b")]
    assert change.item == item("a", quantity=0)


def test_update_sets_absolute_quantity():
    """update_quantity replaces the quantity instead of adding to it."""
    change = apply_operation(
        [item("a", quantity=3)],
        operation("update_quantity", sku="a", quantity=1.5),
        strict=True,
    )
    assert change.action == "quantity_updated"
    assert change.items == [item("a", quantity=1.5)]
    assert change.item == item("a", quantity=1.5)


def test_update_to_zero_removes_line():
    """update_quantity to 0 removes the line and is reported as quantity_updated."""
    change = apply_operation(
        [item("a"), item("b")],
        operation("update_quantity", sku="a", quantity=0),
        strict=True,
    )
    assert change.action == "quantity_updated"
    assert change.items == [item("b")]
    assert change.item == item("a", quantity=0)


def test_clear_empties_cart():
    """clear leaves an empty cart and names no item."""
    change = apply_operation([item("a"), item("b")], operation("clear"), strict=True)
    assert change.action == "cart_cleared"
    assert change.items == []
    assert change.item is None


@pytest.mark.parametrize(
    "missing",
    [{"action": "remove"}, {"action": "update_quantity", "quantity": 2}],
    ids=["remove", "update_quantity"],
)
def test_strict_missing_sku_raises(missing):
    """When the platform keeps the cart alone, an absent SKU raises NotInCart."""
    fields = {key: value for key, value in missing.items() if key != "action"}
    with pytest.raises(NotInCart):
        apply_operation(
            [item("a")], operation(missing["action"], sku="zz", **fields), strict=True
        )


@pytest.mark.parametrize(
    ("action", "fields", "expected_action", "quantity"),
    [
        ("remove", {}, "item_removed", 0),
        ("update_quantity", {"quantity": 2}, "quantity_updated", 2),
    ],
)
def test_lenient_missing_sku_keeps_cart(action, fields, expected_action, quantity):
    """After the merchant agreed, an absent SKU leaves the copy as it is."""
    change = apply_operation(
        [item("a")], operation(action, sku="zz", **fields), strict=False
    )
    assert change.action == expected_action
    assert change.items == [item("a")]
    assert change.item == CartItem("zz", "", None, None, quantity)


def test_event_for_clear_has_no_sku():
    """The cart_cleared event carries items and total but no sku."""
    event = apply_operation([item("a")], operation("clear"), strict=True).to_event()
    assert event == {"action": "cart_cleared", "items": [], "total": 0.0}


def test_event_for_add_names_item():
    """The item_selected event names the item and lists the whole cart."""
    event = apply_operation(
        [], add("a", quantity=2, price=45.9, promo_price=42), strict=True
    ).to_event()
    assert event == {
        "action": "item_selected",
        "sku": "a",
        "name": "a",
        "quantity": 2,
        "price": 45.9,
        "items": [
            {
                "sku": "a",
                "name": "a",
                "price": 45.9,
                "promo_price": 42,
                "quantity": 2,
                "unit": "pcs",
            }
        ],
        "total": 84.0,
    }


# --- cart_total -----------------------------------------------------------


def test_total_of_empty_cart_is_zero():
    """An empty cart totals 0.0."""
    assert cart_total([]) == 0.0


def test_total_prefers_promo_price():
    """A line with a promo price counts at the promo price."""
    line = CartItem("a", "A", price=52, promo_price=42, quantity=2)
    assert cart_total([line]) == 84.0


def test_total_with_fractional_quantity():
    """0.5 kg at promo 40 plus 3 at 12.99 totals 58.97."""
    lines = [
        CartItem("cheese", "Cheese", price=50, promo_price=40, quantity=0.5),
        CartItem("milk", "Milk", price=12.99, promo_price=None, quantity=3),
    ]
    assert cart_total(lines) == 58.97


def test_total_rounds_float_noise():
    """Binary float noise (3 x 0.1) is rounded away to two decimals."""
    assert cart_total([item("a", quantity=3, price=0.1)]) == 0.3


def test_total_counts_unpriced_item_as_zero():
    """A seeded line without a price adds nothing to the total."""
    assert cart_total([item("a", price=None), item("b", price=2.5)]) == 2.5


def test_total_half_cent_rounds_up():
    """Half a kilo at 10.03 totals 5.02, the decimal sum 5.015 rounded."""
    assert cart_total([item("a", quantity=0.5, price=10.03)]) == 5.02


# --- parse_cart_answer ----------------------------------------------------


def test_answer_ok_true():
    """{"ok": true} is an accepted change."""
    assert parse_cart_answer(b'{"ok": true}') == MerchantAnswer(ok=True)


def test_answer_ok_true_ignores_extra_fields():
    """Extra fields beside ok are ignored."""
    assert parse_cart_answer(b'{"ok": true, "cart_id": 7}') == MerchantAnswer(ok=True)


def test_answer_reason_passed_unchanged():
    """A custom reason, Cyrillic and emoji included, comes back as sent."""
    body = '{"ok": false, "reason": "склад порожній 🙁"}'.encode()
    assert parse_cart_answer(body) == MerchantAnswer(False, "склад порожній 🙁")


def test_answer_reason_cut_to_limit():
    """A reason longer than 200 characters is cut to its first 200."""
    reason = "я" * 150 + "x" * 100
    answer = parse_cart_answer(json.dumps({"ok": False, "reason": reason}).encode())
    assert answer.reason == reason[:200]


def test_answer_reason_at_limit_kept():
    """A reason of exactly 200 characters is kept whole."""
    reason = "r" * 200
    answer = parse_cart_answer(json.dumps({"ok": False, "reason": reason}).encode())
    assert answer.reason == reason


@pytest.mark.parametrize(
    "body",
    [
        b'{"ok": "yes"}',
        b'{"ok": 1}',
        b'{"ok": null}',
        b"{}",
        b"[true]",
        b"true",
        b"<html>ok</html>",
        b"",
        b'{"ok": NaN}',
        b'{"ok": true',
        b"\xff\xfe",
        b'{"ok": false}',
        b'{"ok": false, "reason": 5}',
    ],
)
def test_answer_invalid_raises(body):
    """A body that is not ok true or ok false with a reason is invalid."""
    with pytest.raises(WebhookInvalidResponse):
        parse_cart_answer(body)


# --- parse_cart_get -------------------------------------------------------


def test_cart_get_full_item():
    """An item with every field is read as sent."""
    cart = parse_cart_get(
        seeded(
            [
                {
                    "sku": "хліб-01",
                    "name": "Хліб 🍞",
                    "price": 32,
                    "promo_price": 29.5,
                    "quantity": 0.5,
                    "unit": "kg",
                }
            ]
        )
    )
    assert cart.items == [CartItem("хліб-01", "Хліб 🍞", 32, 29.5, 0.5, "kg")]
    assert cart.skipped == 0


def test_cart_get_defaults():
    """Without optional fields, name is "", prices are None and unit is pcs."""
    cart = parse_cart_get(seeded([{"sku": "a", "quantity": 1}]))
    assert cart.items == [CartItem("a", "", None, None, 1, "pcs")]


def test_cart_get_empty_unit_becomes_pcs():
    """An empty unit falls back to "pcs"."""
    cart = parse_cart_get(seeded([{"sku": "a", "quantity": 1, "unit": ""}]))
    assert cart.items[0].unit == "pcs"


@pytest.mark.parametrize(
    "entry",
    [
        {"quantity": 1},
        {"sku": "", "quantity": 1},
        {"sku": 5, "quantity": 1},
        {"sku": "s" * 257, "quantity": 1},
        {"sku": "a"},
        {"sku": "a", "quantity": 0},
        {"sku": "a", "quantity": -1},
        {"sku": "a", "quantity": "1"},
        {"sku": "a", "quantity": True},
        {"sku": "a", "quantity": None},
        {"sku": "a", "quantity": MAX_QUANTITY + 1},
        {"sku": "a", "quantity": 1, "price": MAX_PRICE + 1},
        {"sku": "a", "quantity": 1, "price": -1},
        {"sku": "a", "quantity": 1, "price": 0},
        {"sku": "a", "quantity": 1, "price": "32"},
        {"sku": "a", "quantity": 1, "price": False},
        {"sku": "a", "quantity": 1, "promo_price": -5},
        {"sku": "a", "quantity": 1, "name": 7},
        {"sku": "a", "quantity": 1, "unit": ["kg"]},
        "a",
        5,
        None,
        ["a", 1],
    ],
)
def test_cart_get_invalid_item_skipped(entry):
    """An invalid item is skipped and counted, and the others are kept."""
    cart = parse_cart_get(seeded([entry, {"sku": "ok", "quantity": 1}]))
    assert [line.sku for line in cart.items] == ["ok"]
    assert cart.skipped == 1


@pytest.mark.parametrize(
    "number",
    ["NaN", "Infinity", "-Infinity", "1e400", "9" * 500, "-" + "9" * 500],
)
def test_cart_get_non_finite_number_skips_item(number):
    """A non-finite or overlong number makes only its own item invalid."""
    entries = [
        f'{{"sku": "a", "quantity": {number}}}',
        '{"sku": "b", "quantity": 1}',
        f'{{"sku": "c", "quantity": 1, "price": {number}}}',
    ]
    body = ('{"items": [' + ", ".join(entries) + "]}").encode()
    cart = parse_cart_get(body)
    assert [line.sku for line in cart.items] == ["b"]
    assert cart.skipped == 2


def test_cart_get_duplicate_sku_first_wins():
    """A SKU listed twice keeps its first entry and counts the second as skipped."""
    cart = parse_cart_get(
        seeded([{"sku": "a", "quantity": 1}, {"sku": "a", "quantity": 9}])
    )
    assert cart.items == [CartItem("a", "", None, None, 1)]
    assert cart.skipped == 1


def test_cart_get_duplicate_of_invalid_kept():
    """A valid entry after an invalid one with the same SKU is kept."""
    cart = parse_cart_get(
        seeded([{"sku": "a", "quantity": 0}, {"sku": "a", "quantity": 2}])
    )
    assert cart.items == [CartItem("a", "", None, None, 2)]
    assert cart.skipped == 1


def test_cart_get_items_over_limit_skipped():
    """Items past the 500th are skipped and counted."""
    entries = [{"sku": f"s{i}", "quantity": 1} for i in range(MAX_CART_ITEMS + 3)]
    cart = parse_cart_get(seeded(entries))
    assert len(cart.items) == MAX_CART_ITEMS
    assert cart.skipped == 3


def test_cart_get_long_name_truncated():
    """A name over 500 characters is cut to 500."""
    cart = parse_cart_get(seeded([{"sku": "a", "quantity": 1, "name": "n" * 600}]))
    assert cart.items[0].name == "n" * 500


def test_cart_get_empty_items():
    """An empty items array is an empty cart with nothing skipped."""
    cart = parse_cart_get(b'{"items": []}')
    assert cart.items == []
    assert cart.skipped == 0


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"items": {}}',
        b'{"items": "a"}',
        b"<html></html>",
        b"",
        b"\xff",
    ],
)
def test_cart_get_invalid_body_raises(body):
    """A body that is not an object with an items array is invalid."""
    with pytest.raises(WebhookInvalidResponse):
        parse_cart_get(body)


# --- webhook_body ---------------------------------------------------------


def test_body_for_add_omits_promo_price():
    """add sends action, store, session, sku, name, quantity and price, in order."""
    body = webhook_body(add("a", quantity=2, price=45.9, promo_price=42, name="A"))
    assert list(body.items()) == [
        ("action", "add"),
        ("store_id", "store-1"),
        ("session_id", "user-1"),
        ("sku", "a"),
        ("name", "A"),
        ("quantity", 2),
        ("price", 45.9),
    ]


def test_body_keeps_integer_quantity():
    """An integer quantity stays an int, so the JSON body contains 2, not 2.0."""
    body = webhook_body(add("a", quantity=2, price=3))
    assert type(body["quantity"]) is int
    assert type(body["price"]) is int


def test_body_for_remove():
    """remove sends the common fields and sku only."""
    body = webhook_body(operation("remove", sku="a"))
    assert body == {**{"action": "remove"}, **SESSION, "sku": "a"}


def test_body_for_update_quantity():
    """update_quantity sends the common fields, sku and the new quantity."""
    body = webhook_body(operation("update_quantity", sku="a", quantity=0.25))
    assert body == {
        "action": "update_quantity",
        **SESSION,
        "sku": "a",
        "quantity": 0.25,
    }


def test_body_for_clear():
    """clear sends only the common fields."""
    assert webhook_body(operation("clear")) == {"action": "clear", **SESSION}


def test_empty_reason_passed_through():
    """An empty reason is still a string, so it is passed on unchanged."""
    answer = parse_cart_answer(b'{"ok": false, "reason": ""}')
    assert answer.ok is False
    assert answer.reason == ""


def test_add_past_quantity_cap_raises():
    """Adding to an item past MAX_QUANTITY raises instead of storing it."""
    items = [CartItem("a", "A", 10, None, MAX_QUANTITY)]
    add = OPERATION.validate_python(
        {
            "action": "add",
            "store_id": "s",
            "session_id": "u",
            "sku": "a",
            "name": "A",
            "quantity": 1,
            "price": 10,
        }
    )
    with pytest.raises(QuantityExceeded):
        apply_operation(items, add, strict=True)


@pytest.mark.parametrize("quantity", [5e-324, 0.0001, MAX_QUANTITY + 1])
def test_add_quantity_out_of_bounds(quantity):
    """Quantities below 0.001 or above MAX_QUANTITY are invalid input."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        OPERATION.validate_python(
            {
                "action": "add",
                "store_id": "s",
                "session_id": "u",
                "sku": "a",
                "name": "A",
                "quantity": quantity,
                "price": 10,
            }
        )
