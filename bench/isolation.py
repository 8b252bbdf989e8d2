"""Tenant B's products-check latency alone, and while tenant A's merchant hangs.

Run: .venv/bin/python bench/isolation.py [--calls 400] [--hanging 200]

Both phases run in one process against the same healthy merchant for B, so the
ratio between them is the cost A's hanging merchant imposes on B. The flood phases
repeat the hang with more calls, with the bulkheads and with them lifted (limits
raised above A's call count)
to show what they protect against: with more hanging calls than the
connection pool holds (1000), B's calls queue behind A's for a free connection.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web

from bench.harness import (
    Environment,
    dispatcher,
    environment,
    merchant,
    percentiles,
    pricing_handler,
    settings_for,
)
from dispatcher.logging import configure_logging
from dispatcher.products import ProductsCheckRequest
from dispatcher.service import Dispatcher
from dispatcher.webhook_settings import WebhookSettingsUpdate

B_CONCURRENCY = 20
HANG_TIMEOUT_SECONDS = 5.0


async def tenant(service: Dispatcher, url: str, timeout_seconds: float) -> str:
    tenant_id, _ = await service.repository.create_tenant("bench")
    await service.update_config(
        tenant_id,
        WebhookSettingsUpdate(products_url=url, timeout_seconds=timeout_seconds),
    )
    return tenant_id


async def run_b(
    service: Dispatcher, tenant_id: str, calls: int
) -> tuple[list[float], int]:
    """Make `calls` products checks, B_CONCURRENCY at a time; return latencies in ms."""
    request = ProductsCheckRequest.model_validate(
        {"store_id": "s", "products": [{"sku": f"sku-{i}"} for i in range(5)]}
    )
    latencies: list[float] = []
    failures = 0
    queue = iter(range(calls))

    async def worker() -> None:
        nonlocal failures
        for _ in queue:
            started = time.perf_counter()
            result = await service.check_products(tenant_id, request)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += len(result.unavailable) > 0

    await asyncio.gather(*(worker() for _ in range(B_CONCURRENCY)))
    return latencies, failures


async def keep_hanging(
    service: Dispatcher, tenant_id: str, count: int, stop: asyncio.Event
) -> None:
    """Keep `count` calls of tenant A in flight until `stop` is set."""
    request = ProductsCheckRequest.model_validate(
        {"store_id": "s", "products": [{"sku": "a"}]}
    )

    async def loop() -> None:
        while not stop.is_set():
            await service.check_products(tenant_id, request)

    await asyncio.gather(*(loop() for _ in range(count)))


async def phase(
    env: Environment, calls: int, hanging: int, **limits: Any
) -> tuple[list[float], int]:
    release = asyncio.Event()

    async def hang(_request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"products": []})

    settings = settings_for(env, circuit_failure_threshold=1000, **limits)
    async with (
        merchant(env, pricing_handler) as healthy_url,
        merchant(env, hang) as hanging_url,
        dispatcher(settings) as service,
    ):
        tenant_b = await tenant(service, healthy_url + "/products", 5.0)
        await run_b(service, tenant_b, 50)  # warm connections and caches
        if not hanging:
            return await run_b(service, tenant_b, calls)

        tenant_a = await tenant(
            service, hanging_url + "/products", HANG_TIMEOUT_SECONDS
        )
        stop = asyncio.Event()
        background = asyncio.create_task(keep_hanging(service, tenant_a, hanging, stop))
        await asyncio.sleep(1.0)  # A's calls now hold their slots
        try:
            return await run_b(service, tenant_b, calls)
        finally:
            stop.set()
            release.set()
            await background


def report(
    name: str, latencies: list[float], failures: int, baseline: dict[str, float] | None
) -> dict[str, float]:
    stats = percentiles(latencies)
    line = ", ".join(f"{key} {value:.1f} ms" for key, value in stats.items())
    print(f"{name:<36} {line}, failed checks {failures}/{len(latencies)}")
    if baseline is not None:
        ratios = ", ".join(f"{key} x{stats[key] / baseline[key]:.2f}" for key in stats)
        print(f"{'':<36} ratio to B alone: {ratios}")
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=400, help="B's products checks per phase"
    )
    parser.add_argument(
        "--hanging", type=int, default=200, help="A's calls kept in flight"
    )
    parser.add_argument(
        "--flood",
        type=int,
        default=1100,
        help="A's calls in the flood phases, above the 1000-connection pool",
    )
    args = parser.parse_args()
    configure_logging("ERROR", "json")
    lifted = {"max_concurrent_per_host": 10_000, "max_concurrent_per_tenant": 10_000}
    flood_calls = max(args.calls // 4, 20)

    async with environment() as env:
        alone = report("B alone", *await phase(env, args.calls, 0), None)
        report(
            f"B while A hangs x{args.hanging}",
            *await phase(env, args.calls, args.hanging),
            alone,
        )
        report(
            f"B while A hangs x{args.flood}",
            *await phase(env, flood_calls, args.flood),
            alone,
        )
        report(
            f"B while A hangs x{args.flood}, no bulkheads",
            *await phase(env, flood_calls, args.flood, **lifted),
            alone,
        )


if __name__ == "__main__":
    asyncio.run(main())
