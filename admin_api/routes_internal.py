"""Internal routes: the platform's search and agent call the dispatcher."""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter

from admin_api.auth import require_internal
from admin_api.errors import (
    HTTPError,
    parse_model,
    parse_tagged_union,
    read_json,
)
from admin_api.keys import DISPATCHER
from dispatcher.cart import CartOperation, SessionStartRequest
from dispatcher.products import ProductsCheckRequest

routes = web.RouteTableDef()


@routes.post("/internal/v1/tenants/{tenant_id}/products/check")
async def products_check(request: web.Request) -> web.Response:
    require_internal(request)
    check = parse_model(ProductsCheckRequest, await read_json(request))

    result = await request.app[DISPATCHER].check_products(
        request.match_info["tenant_id"], check
    )
    return web.json_response(result.model_dump(mode="json"))


_CART_OPERATION: TypeAdapter[CartOperation] = TypeAdapter(CartOperation)


@routes.post("/internal/v1/tenants/{tenant_id}/cart")
async def cart_operation(request: web.Request) -> web.Response:
    require_internal(request)
    operation = parse_tagged_union(_CART_OPERATION, await read_json(request))

    result = await request.app[DISPATCHER].apply_cart_operation(
        request.match_info["tenant_id"], operation
    )
    return web.json_response(result.to_json())


@routes.post("/internal/v1/tenants/{tenant_id}/sessions")
async def session_start(request: web.Request) -> web.Response:
    require_internal(request)
    start = parse_model(SessionStartRequest, await read_json(request))

    view = await request.app[DISPATCHER].start_session(
        request.match_info["tenant_id"], start
    )
    return web.json_response(view.to_json())


@routes.get("/internal/v1/tenants/{tenant_id}/sessions/{session_id}/cart")
async def session_cart(request: web.Request) -> web.Response:
    require_internal(request)
    parameters = {"session_id": request.match_info["session_id"]}
    if "store_id" in request.query:
        parameters["store_id"] = request.query["store_id"]
    query = parse_model(SessionStartRequest, parameters, location="query")
    tenant_id, store_id, session_id = (
        request.match_info["tenant_id"],
        query.store_id,
        query.session_id,
    )
    view = await request.app[DISPATCHER].session_cart(tenant_id, store_id, session_id)
    if view is None:
        raise HTTPError(
            404, f"session {session_id!r} has no cart in store {store_id!r}"
        )
    return web.json_response(view.to_json())
