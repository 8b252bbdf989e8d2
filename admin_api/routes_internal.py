"""Internal routes: the platform's search and agent call the dispatcher."""

from __future__ import annotations

from aiohttp import web

from admin_api.auth import require_internal
from admin_api.errors import parse_model, read_json
from admin_api.keys import DISPATCHER
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
