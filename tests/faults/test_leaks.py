"""Thousands of failing calls leave no tasks, sockets, slots, locks or memory behind.

One fault-injection campaign runs per module, in an event loop of its own, with an
in-process dispatcher on SQLite. Each wave sends a fixed mix of products checks
and cart operations concurrently: to a healthy merchant, to one returning 500,
to one resetting connections, to one with an untrusted certificate, to merchants
that hang past a 0.5 s timeout, and calls that the caller cancels. One warm-up
wave fills pools and caches first. The tests compare counts taken after the
warm-up with counts taken after the last wave, once the merchants' keep-alive
has closed idle connections.

The campaign builds its Settings with the same values as the `make_settings`
fixture, because that fixture is function-scoped and the campaign runs once per
module.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import ssl
import struct
import threading
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from sqlalchemy.engine import make_url

from dispatcher.cart import AddItem
from dispatcher.products import ProductsCheckRequest, ProductsCheckResult
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from dispatcher.webhook_settings import WebhookSettingsUpdate
from tests.conftest import INTERNAL_TOKEN, LOOPBACK, StaticResolver
from tests.faults.conftest import RawServer, RawServers, wait_for_client_close

WAVES = 8
HANG_TIMEOUT_SECONDS = 0.5
# Callers give up on "cancelled" calls after this long, inside the first attempt.
CANCEL_AFTER_SECONDS = 0.2
# The merchants' aiohttp servers close idle keep-alive connections after this,
# so that settling does not wait for the client's own 15 s keep-alive timeout.
SERVER_KEEPALIVE_SECONDS = 0.2
# Maximum wait for idle connections to close before counting. It guards against
# a hang and is not a measurement.
SETTLE_GUARD_SECONDS = 10.0
MEMORY_GROWTH_LIMIT_BYTES = 5 * 1024 * 1024
HEALTHY_NAME = "merchant.test"

# Number of calls of each kind in one wave. All calls of a wave run concurrently.
WAVE_MIX = {
    "healthy": 100,
    "status_500": 40,
    "reset": 40,
    "untrusted_tls": 30,
    "hang": 30,
    "cancelled": 10,
    "cart_ok": 30,
    "cart_hang": 10,
    "cart_cancelled": 5,
}
EXPECTED_OUTCOME = {
    "healthy": "available",
    "status_500": "webhook_error",
    "reset": "webhook_error",
    "untrusted_tls": "webhook_error",
    "hang": "webhook_timeout",
    "cancelled": "cancelled",
    "cart_ok": "ok",
    "cart_hang": "webhook_timeout",
    "cart_cancelled": "cancelled",
}
# Operations on one session wait for that session's lock in the cart store, so
# five shared sessions make healthy cart calls wait for each other.
SHARED_CART_SESSIONS = 5


@dataclass(frozen=True)
class Counts:
    tasks: int
    fds: int
    threads: int
    traced_bytes: int


@dataclass(frozen=True)
class Campaign:
    before: Counts
    after: Counts
    outcomes: Counter[tuple[str, str]]
    calls: int
    # Taken right after the last wave, before idle connections were closed.
    acquired_connections: int
    # Maximum of idle pooled connections during the waves, sampled every 10 ms.
    idle_connections_peak: int
    idle_connection_bound: int
    bulkhead_keys: int
    cart_locks: int


# --- merchants ----------------------------------------------------------------


async def reset_connection(
    _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Reset the connection after reading the request (SO_LINGER 0, then close)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def hang(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await wait_for_client_close(reader)


async def price_all(request: web.Request) -> web.Response:
    skus = json.loads(await request.read())["skus"]
    return web.json_response(
        {"products": [{"sku": sku, "price": 10.5, "in_stock": True} for sku in skus]}
    )


async def accept_cart(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"ok": True})


async def fail_500(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=500)


async def start_app(
    runners: list[web.AppRunner],
    server_ssl: ssl.SSLContext,
    routes: list[web.RouteDef],
) -> int:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(
        app, handle_signals=False, keepalive_timeout=SERVER_KEEPALIVE_SECONDS
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    runners.append(runner)
    port: int = runner.addresses[0][1]
    return port


# --- measuring ------------------------------------------------------------------


def connector(dispatcher: Dispatcher) -> Any:
    session = dispatcher.transport._session
    assert session is not None
    return session.connector


def acquired_connections(dispatcher: Dispatcher) -> int:
    return len(connector(dispatcher)._acquired)


def idle_connections(dispatcher: Dispatcher) -> int:
    """Count pooled keep-alive connections whose socket is still open."""
    return sum(
        1
        for pooled in connector(dispatcher)._conns.values()
        for protocol, _since in pooled
        if protocol.is_connected()
    )


@dataclass
class IdlePeak:
    value: int = 0


async def sample_idle_peak(dispatcher: Dispatcher, peak: IdlePeak) -> None:
    while True:
        peak.value = max(peak.value, idle_connections(dispatcher))
        await asyncio.sleep(0.01)


def open_fds(database_path: str) -> int:
    """Count the process's open file descriptors, except the SQLite database's.

    SQLite keeps a closed connection's descriptor open while another connection
    of the process holds a POSIX lock on the file, so the number of descriptors
    on the database and its -wal file moves by one or two between quiet points.
    """
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue  # the descriptor listdir() itself used, closed by now
        if not target.startswith(database_path):
            count += 1
    return count


def count_now(database_path: str) -> Counts:
    gc.collect()
    return Counts(
        tasks=len(asyncio.all_tasks()),
        fds=open_fds(database_path),
        threads=threading.active_count(),
        traced_bytes=tracemalloc.get_traced_memory()[0],
    )


async def settle(dispatcher: Dispatcher, open_raw: Callable[[], int]) -> None:
    """Wait until no pooled connection and no raw-server connection is open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_GUARD_SECONDS
    while loop.time() < deadline:
        if idle_connections(dispatcher) == 0 and open_raw() == 0:
            break
        await asyncio.sleep(0.05)
    # Let callbacks scheduled by the last closes run.
    for _ in range(10):
        await asyncio.sleep(0)


# --- the campaign -----------------------------------------------------------------


def products_request(sku: str) -> ProductsCheckRequest:
    return ProductsCheckRequest.model_validate(
        {"store_id": "store-1", "products": [{"sku": sku}]}
    )


def add_item(session_id: str, sku: str) -> AddItem:
    return AddItem(
        action="add",
        store_id="store-1",
        session_id=session_id,
        sku=sku,
        name="Milk",
        quantity=1,
        price=45.9,
    )


async def outcome_of(call: Awaitable[Any], cancel: bool) -> str:
    """Run one call and name its outcome, cancelling it early if `cancel` is set."""
    try:
        if cancel:
            result = await asyncio.wait_for(call, CANCEL_AFTER_SECONDS)
        else:
            result = await call
    except TimeoutError:
        return "cancelled"
    if isinstance(result, ProductsCheckResult):
        if result.products:
            return "available"
        return str(result.unavailable[0].reason)
    return "ok" if result.ok else str(result.reason)


@dataclass
class Merchants:
    # Webhook URL and tenant timeout (None for the default) for each kind of call.
    urls: dict[str, tuple[str, float | None]]
    hosts: int
    raw: list[RawServer]

    def open_raw_connections(self) -> int:
        return sum(server.open_connections for server in self.raw)


async def start_merchants(
    runners: list[web.AppRunner],
    raw_servers: RawServers,
    server_ssl: ssl.SSLContext,
    untrusted_ssl: ssl.SSLContext,
) -> Merchants:
    healthy_port = await start_app(
        runners,
        server_ssl,
        [web.post("/products", price_all), web.post("/cart", accept_cart)],
    )
    failing_port = await start_app(
        runners, server_ssl, [web.post("/products", fail_500)]
    )
    resetting = await raw_servers.start(reset_connection)
    untrusted = await raw_servers.start(hang, untrusted_ssl)
    hanging = await raw_servers.start(hang)
    hanging_for_cancel = await raw_servers.start(hang)
    hanging_cart = await raw_servers.start(hang)
    raw = [resetting, untrusted, hanging, hanging_for_cancel, hanging_cart]

    healthy = f"https://{HEALTHY_NAME}:{healthy_port}"
    urls = {
        "healthy": (f"{healthy}/products", None),
        "status_500": (f"https://127.0.0.1:{failing_port}/products", None),
        "reset": (resetting.url(), None),
        "untrusted_tls": (untrusted.url(), None),
        "hang": (hanging.url(), HANG_TIMEOUT_SECONDS),
        "cancelled": (hanging_for_cancel.url(), HANG_TIMEOUT_SECONDS),
        "cart_ok": (f"{healthy}/cart", None),
        "cart_hang": (hanging_cart.url("/cart"), HANG_TIMEOUT_SECONDS),
        "cart_cancelled": (hanging_cart.url("/cart"), HANG_TIMEOUT_SECONDS),
    }
    return Merchants(urls=urls, hosts=len(runners) + len(raw), raw=raw)


async def create_tenants(
    dispatcher: Dispatcher, urls: dict[str, tuple[str, float | None]]
) -> dict[str, str]:
    """Create one tenant per kind of call and return their ids by kind."""
    tenants: dict[str, str] = {}
    for kind, (url, timeout_seconds) in urls.items():
        tenant_id, _ = await dispatcher.repository.create_tenant(kind)
        field = "cart_url" if kind.startswith("cart") else "products_url"
        update = WebhookSettingsUpdate(**{field: url}, timeout_seconds=timeout_seconds)
        await dispatcher.update_config(tenant_id, update)
        tenants[kind] = tenant_id
    return tenants


def call_for(
    dispatcher: Dispatcher, tenants: dict[str, str], kind: str, wave: int, index: int
) -> Awaitable[Any]:
    tenant_id = tenants[kind]
    if kind == "cart_ok":
        session_id = f"shared-{index % SHARED_CART_SESSIONS}"
    elif kind == "cart_cancelled":
        # One session, so most of these are cancelled while queued on its lock
        # rather than during the merchant call.
        session_id = "cancelled"
    else:
        session_id = f"{kind}-{wave}-{index}"
    if kind.startswith("cart"):
        operation = add_item(session_id, f"sku-{index}")
        return dispatcher.apply_cart_operation(tenant_id, operation)
    request = products_request(f"sku-{wave}-{index}")
    return dispatcher.check_products(tenant_id, request)


async def run_wave(
    dispatcher: Dispatcher, tenants: dict[str, str], wave: int
) -> Counter[tuple[str, str]]:
    """Send one wave of calls at once; count (kind, outcome) pairs."""
    kinds = [kind for kind, count in WAVE_MIX.items() for _ in range(count)]
    outcomes = await asyncio.gather(
        *(
            outcome_of(
                call_for(dispatcher, tenants, kind, wave, index), "cancelled" in kind
            )
            for index, kind in enumerate(kinds)
        )
    )
    return Counter(zip(kinds, outcomes, strict=True))


async def run_campaign(
    settings: Settings, server_ssl: ssl.SSLContext, untrusted_ssl: ssl.SSLContext
) -> Campaign:
    database_path = str(make_url(settings.database_url).database)
    runners: list[web.AppRunner] = []
    raw_servers = RawServers(server_ssl)
    resolver = StaticResolver({HEALTHY_NAME: ["127.0.0.1"]})
    dispatcher = Dispatcher.create(settings, resolver)
    await dispatcher.start()
    try:
        merchants = await start_merchants(
            runners, raw_servers, server_ssl, untrusted_ssl
        )
        tenants = await create_tenants(dispatcher, merchants.urls)
        await run_wave(dispatcher, tenants, wave=-1)
        await settle(dispatcher, merchants.open_raw_connections)

        idle_peak = IdlePeak()
        tracemalloc.start()
        try:
            before = count_now(database_path)
            sampler = asyncio.create_task(sample_idle_peak(dispatcher, idle_peak))
            outcomes: Counter[tuple[str, str]] = Counter()
            for wave in range(WAVES):
                outcomes += await run_wave(dispatcher, tenants, wave)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)

            acquired = acquired_connections(dispatcher)
            bulkhead_keys = dispatcher.transport.bulkheads.tracked_keys
            cart_locks = len(dispatcher.carts._locks)
            await settle(dispatcher, merchants.open_raw_connections)
            after = count_now(database_path)
        finally:
            tracemalloc.stop()

        return Campaign(
            before=before,
            after=after,
            outcomes=outcomes,
            calls=sum(outcomes.values()),
            acquired_connections=acquired,
            idle_connections_peak=idle_peak.value,
            idle_connection_bound=settings.max_concurrent_per_host * merchants.hosts,
            bulkhead_keys=bulkhead_keys,
            cart_locks=cart_locks,
        )
    finally:
        await dispatcher.close()
        await raw_servers.close()
        for runner in runners:
            await runner.cleanup()


@pytest.fixture(scope="module")
def campaign(
    sqlite_url: str, ca_file: Path, encryption_key: str, server_ssl: ssl.SSLContext
) -> Campaign:
    settings = Settings(
        database_url=sqlite_url,
        allow_private_networks=(LOOPBACK,),
        extra_ca_file=ca_file,
        internal_token=INTERNAL_TOKEN,
        encryption_key=encryption_key,
        retry_wait_seconds=0.01,
        # No tenant fails 1000 times in the run (at most 40 calls in each of the
        # WAVES + 1 waves), so every circuit stays closed and each call is sent.
        circuit_failure_threshold=1000,
    )
    untrusted_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(untrusted_ssl)
    return asyncio.run(run_campaign(settings, server_ssl, untrusted_ssl))


# --- the tests ----------------------------------------------------------------------


def test_every_call_met_its_fault(campaign: Campaign) -> None:
    """Each kind of call ended the way its merchant's fault dictates."""
    expected = Counter(
        {
            (kind, EXPECTED_OUTCOME[kind]): count * WAVES
            for kind, count in WAVE_MIX.items()
        }
    )
    assert campaign.outcomes == expected


def test_no_tasks_left(campaign: Campaign) -> None:
    """The event loop runs no more tasks than before the campaign."""
    assert campaign.after.tasks <= campaign.before.tasks


def test_no_connections_acquired(campaign: Campaign) -> None:
    """No connection stays checked out of the pool once every call returned."""
    assert campaign.acquired_connections == 0


def test_idle_connections_bounded(campaign: Campaign) -> None:
    """Idle keep-alive connections stay within the per-host limit times hosts."""
    assert campaign.idle_connections_peak <= campaign.idle_connection_bound


def test_no_file_descriptors_left(campaign: Campaign) -> None:
    """The process has no more sockets, pipes or files open than before."""
    assert campaign.after.fds <= campaign.before.fds


def test_no_threads_left(campaign: Campaign) -> None:
    """The process runs no more threads than before the campaign."""
    assert campaign.after.threads <= campaign.before.threads


def test_bulkhead_keys_released(campaign: Campaign) -> None:
    """The bulkheads track no host or tenant once every call returned."""
    assert campaign.bulkhead_keys == 0


def test_cart_locks_released(campaign: Campaign) -> None:
    """The cart store keeps no session lock once every operation returned."""
    assert campaign.cart_locks == 0


def test_memory_growth_bounded(campaign: Campaign) -> None:
    """Python memory allocated during the campaign and still alive is under 5 MiB."""
    growth = campaign.after.traced_bytes - campaign.before.traced_bytes
    assert growth < MEMORY_GROWTH_LIMIT_BYTES
