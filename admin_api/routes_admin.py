"""Admin routes: a merchant's admin configures and probes the webhooks."""

from __future__ import annotations

from aiohttp import web

from admin_api.auth import require_admin
from admin_api.errors import HTTPError, parse_model, read_json
from admin_api.keys import DISPATCHER
from admin_api.schemas import WebhooksPatch, WebhooksView, WebhookTestRequest
from dispatcher.webhook_settings import WebhookSettingsUpdate

routes = web.RouteTableDef()


@routes.get("/api/v1/admin/webhooks")
async def get_webhooks(request: web.Request) -> web.Response:
    tenant_id = await require_admin(request)
    config = await request.app[DISPATCHER].get_config(tenant_id)
    view = WebhooksView(
        products_url=config.products_url,
        cart_url=config.cart_url,
        cart_get_url=config.cart_get_url,
        has_secret=config.secret is not None,
        timeout_seconds=config.timeout_seconds,
        circuit=request.app[DISPATCHER].circuit_states(tenant_id),
    )
    return web.json_response(view.model_dump())


@routes.patch("/api/v1/admin/webhooks")
async def patch_webhooks(request: web.Request) -> web.Response:
    tenant_id = await require_admin(request)
    patch = parse_model(WebhooksPatch, await read_json(request))

    update = WebhookSettingsUpdate(**patch.model_dump(exclude_none=True))
    result = await request.app[DISPATCHER].update_config(tenant_id, update)

    body: dict[str, object] = {"ok": True, "has_secret": result.has_secret}
    if result.generated_secret is not None:
        body["secret"] = result.generated_secret
    return web.json_response(body)


@routes.post("/api/v1/admin/webhooks/test")
async def test_webhook(request: web.Request) -> web.Response:
    tenant_id = await require_admin(request)
    raw = await request.read()
    probe = (
        parse_model(WebhookTestRequest, await read_json(request))
        if raw.strip()
        else WebhookTestRequest()
    )
    if probe.webhook == "cart":
        raise HTTPError(
            400,
            "The cart webhook is not probed, because cart operations have side "
            'effects; probe "products" or "cart_get" instead',
        )

    result = await request.app[DISPATCHER].probe(tenant_id, probe.webhook)
    body: dict[str, object] = {
        "ok": result.ok,
        "status_code": result.status_code,
        "response_time_ms": result.response_time_ms,
    }
    if result.error is not None:
        body["error"] = result.error
    return web.json_response(body)


@routes.post("/api/v1/admin/webhooks/secret/rotate")
async def rotate_secret(request: web.Request) -> web.Response:
    tenant_id = await require_admin(request)
    secret = await request.app[DISPATCHER].rotate_secret(tenant_id)
    return web.json_response({"secret": secret})
