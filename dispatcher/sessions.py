"""Cart operations and session start: the merchant first, then the session cart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from dispatcher.cart import (
    AddItem,
    CartItem,
    ClearCart,
    NotInCart,
    QuantityExceeded,
    RemoveItem,
    SessionStartRequest,
    UpdateQuantity,
    apply_operation,
    cart_total,
    parse_cart_answer,
    parse_cart_get,
    webhook_body,
)
from dispatcher.errors import WebhookError
from dispatcher.signing import encode_body
from dispatcher.storage.carts import CartStore, SessionKey
from dispatcher.storage.repository import TenantConfig
from dispatcher.transport import Transport, WebhookCall
from dispatcher.urls import with_query

log = structlog.get_logger("dispatcher.cart")

Operation = AddItem | RemoveItem | UpdateQuantity | ClearCart


@dataclass(frozen=True)
class CartResult:
    """`{"ok": true, "cart_changed": {...}}` or `{"ok": false, "reason": "..."}`."""

    ok: bool
    cart_changed: dict[str, Any] | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "cart_changed": self.cart_changed}
        return {"ok": False, "reason": self.reason}


@dataclass(frozen=True)
class SessionCartView:
    """A session's cart as the platform stores it; `reason` is set on failure."""

    items: list[CartItem] = field(default_factory=list)
    reason: str | None = None
    skipped_items: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": self.reason is None,
            "items": [item.to_json() for item in self.items],
            "total": cart_total(self.items),
        }
        if self.reason is not None:
            body["reason"] = self.reason
        if self.skipped_items:
            body["skipped_items"] = self.skipped_items
        return body


def _failure_reason(exc: WebhookError) -> str:
    return "webhook_timeout" if exc.timed_out_every_attempt else "webhook_error"


async def apply_cart_operation(
    transport: Transport, carts: CartStore, config: TenantConfig, operation: Operation
) -> CartResult:
    """Send the operation to the merchant, then apply it if the merchant agreed.

    Without a cart URL the platform keeps the cart itself. A rejected or failed
    call leaves the session cart unchanged.
    """
    key: SessionKey = (config.tenant_id, operation.store_id, operation.session_id)
    keeps_cart_alone = not config.cart_url or config.secret is None
    async with carts.locked(key) as slot:
        # The change is computed first, so an operation the session cart cannot
        # take is rejected before the merchant applies it.
        try:
            change = apply_operation(
                slot.items or [], operation, strict=keeps_cart_alone
            )
        except NotInCart:
            return CartResult(ok=False, reason="not_in_cart")
        except QuantityExceeded:
            return CartResult(ok=False, reason="quantity_exceeded")

        if not keeps_cart_alone:
            rejection = await _ask_merchant(transport, config, operation)
            if rejection is not None:
                return CartResult(ok=False, reason=rejection)

        slot.replace(change.items)
        return CartResult(ok=True, cart_changed=change.to_event())


async def _ask_merchant(
    transport: Transport, config: TenantConfig, operation: Operation
) -> str | None:
    """Send the operation; return None if the merchant applied it, else why not."""
    call = _cart_call(config, operation)
    try:
        response = await transport.send(call)
        answer = parse_cart_answer(response.body)
    except WebhookError as exc:
        return _failure_reason(exc)
    if answer.ok:
        return None

    log.info(
        "cart.operation_rejected",
        tenant_id=config.tenant_id,
        action=operation.action,
        request_id=call.request_id,
        reason=answer.reason,
    )
    return answer.reason


def _cart_call(config: TenantConfig, operation: Operation) -> WebhookCall:
    assert config.secret is not None
    return WebhookCall(
        tenant_id=config.tenant_id,
        webhook="cart",
        method="POST",
        url=config.cart_url,
        body=encode_body(webhook_body(operation)),
        secret=config.secret,
        timeout_seconds=config.timeout_seconds,
    )


async def start_session(
    transport: Transport,
    carts: CartStore,
    config: TenantConfig,
    request: SessionStartRequest,
) -> SessionCartView:
    """Seed the session cart from the merchant's cart GET webhook.

    Without a cart GET URL an existing session cart is kept (empty for a new
    session). When the call fails the session starts with an empty cart and the
    view's `reason` states why. The conversation is never blocked.
    """
    key: SessionKey = (config.tenant_id, request.store_id, request.session_id)
    async with carts.locked(key) as slot:
        if not config.cart_get_url or config.secret is None:
            if slot.items is None:
                slot.replace([])
            return SessionCartView(items=slot.items or [])

        call = cart_get_call(config, request.store_id, request.session_id)
        try:
            response = await transport.send(call)
            seeded = parse_cart_get(response.body)
        except WebhookError as exc:
            slot.replace([])
            return SessionCartView(reason=_failure_reason(exc))

        if seeded.skipped:
            log.warning(
                "cart.items_skipped",
                tenant_id=config.tenant_id,
                request_id=call.request_id,
                skipped_items=seeded.skipped,
            )
        slot.replace(seeded.items)
        return SessionCartView(items=seeded.items, skipped_items=seeded.skipped)


def cart_get_call(config: TenantConfig, store_id: str, session_id: str) -> WebhookCall:
    """Build the signed GET; the signature covers an empty body."""
    assert config.secret is not None
    url = with_query(
        config.cart_get_url, {"store_id": store_id, "session_id": session_id}
    )
    return WebhookCall(
        tenant_id=config.tenant_id,
        webhook="cart_get",
        method="GET",
        url=url,
        body=b"",
        secret=config.secret,
        timeout_seconds=config.timeout_seconds,
    )
