"""The aiohttp application: routes, middleware and the dispatcher's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from admin_api import routes_admin, routes_internal
from admin_api.errors import error_middleware
from admin_api.keys import DISPATCHER, SETTINGS
from dispatcher.errors import DispatcherError
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings

log = structlog.get_logger("admin_api")

# Request bodies above this get a 413 response. A products check of 1,000 search
# results with catalog fields stays well below it.
MAX_REQUEST_BYTES = 1024 * 1024

health_routes = web.RouteTableDef()


@health_routes.get("/health")
async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@health_routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    try:
        await request.app[DISPATCHER].repository.ping()
    except DispatcherError:
        return web.json_response({"status": "database unreachable"}, status=503)
    return web.json_response({"status": "ready"})


def create_app(
    settings: Settings, dispatcher: Dispatcher | None = None
) -> web.Application:
    """Build the application; the dispatcher starts and stops with it."""
    app = web.Application(
        middlewares=[error_middleware], client_max_size=MAX_REQUEST_BYTES
    )
    app[SETTINGS] = settings
    app[DISPATCHER] = dispatcher or Dispatcher.create(settings)
    app.add_routes(health_routes)
    app.add_routes(routes_admin.routes)
    app.add_routes(routes_internal.routes)
    app.cleanup_ctx.append(_dispatcher_lifecycle)
    return app


async def _dispatcher_lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    dispatcher = app[DISPATCHER]
    await dispatcher.start()
    if settings.allow_private_networks:
        log.warning(
            "service.private_networks_allowed",
            networks=[str(network) for network in settings.allow_private_networks],
            note="development only: merchant URLs may point at these networks",
        )
    if settings.internal_token is None:
        log.info(
            "service.internal_api_disabled", reason="VIZOCHOK_INTERNAL_TOKEN unset"
        )
    log.info("service.started", host=settings.host, port=settings.port)
    yield
    await dispatcher.close()
    log.info("service.stopped")
