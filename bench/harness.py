"""Shared set-up for the benchmarks: HTTPS merchants and a dispatcher on loopback.

Everything runs in one process on 127.0.0.1, with a throwaway CA from trustme and
a temporary SQLite database, so each benchmark compares its cases in the same run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import statistics
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from cryptography.fernet import Fernet

from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from dispatcher.storage.migrate import upgrade_to_head

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Environment:
    ca_file: Path
    server_ssl: ssl.SSLContext
    database_url: str


@asynccontextmanager
async def environment() -> AsyncIterator[Environment]:
    with tempfile.TemporaryDirectory(prefix="vizochok-bench-") as workdir:
        ca = trustme.CA()
        ca_file = Path(workdir) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
        database_url = f"sqlite+aiosqlite:///{workdir}/bench.db"
        await asyncio.to_thread(upgrade_to_head, database_url)
        yield Environment(ca_file, server_ssl, database_url)


def settings_for(env: Environment, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": env.database_url,
        "allow_private_networks": (ipaddress.ip_network("127.0.0.0/8"),),
        "extra_ca_file": env.ca_file,
        "encryption_key": Fernet.generate_key().decode(),
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def merchant(env: Environment, handler: Handler) -> AsyncIterator[str]:
    """Serve `handler` over HTTPS on 127.0.0.1 and yield its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=0.1
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=env.server_ssl, backlog=2048)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def pricing_handler(request: web.Request) -> web.Response:
    """Price every requested SKU at 10.50, in stock, as a healthy merchant would."""
    skus = json.loads(await request.read())["skus"]
    return web.json_response(
        {"products": [{"sku": sku, "price": 10.5, "in_stock": True} for sku in skus]}
    )


@asynccontextmanager
async def dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    service = Dispatcher.create(settings)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "max": ordered[-1],
    }
