"""What the dispatcher adds to a products call, against a bare aiohttp POST.

Run: .venv/bin/python bench/overhead.py [--calls 2000]

Both cases call the same HTTPS merchant on loopback, one call at a time, over a
warm keep-alive connection. The baseline signs and POSTs the body with a plain
aiohttp session and parses the JSON answer; the dispatcher case runs the whole
products check (cached tenant config, URL guard, bulkheads, circuit, signing,
capped read, strict validation, filtering). The ratio is the dispatcher's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
import tracemalloc

import aiohttp

from bench.harness import (
    dispatcher,
    environment,
    merchant,
    percentiles,
    pricing_handler,
    settings_for,
)
from dispatcher.logging import configure_logging
from dispatcher.products import ProductsCheckRequest
from dispatcher.signing import encode_body, signature_headers
from dispatcher.webhook_settings import WebhookSettingsUpdate

SKUS = [f"sku-{index}" for index in range(10)]


async def baseline(url: str, ca_file: str, calls: int) -> list[float]:
    context = ssl.create_default_context(cafile=ca_file)
    latencies = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context)
    ) as session:
        for _ in range(calls + 50):
            started = time.perf_counter()
            body = encode_body({"skus": SKUS, "store_id": "s"})
            headers = {
                "Content-Type": "application/json",
                **signature_headers("x" * 64, body),
            }
            async with session.post(url, data=body, headers=headers) as response:
                json.loads(await response.read())
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies[50:]


async def through_dispatcher(env, url: str, calls: int) -> tuple[list[float], int]:
    request = ProductsCheckRequest.model_validate(
        {"store_id": "s", "products": [{"sku": sku, "name": "x"} for sku in SKUS]}
    )
    async with dispatcher(settings_for(env)) as service:
        tenant_id, _ = await service.repository.create_tenant("bench")
        await service.update_config(tenant_id, WebhookSettingsUpdate(products_url=url))
        latencies = []
        for _ in range(calls + 50):
            started = time.perf_counter()
            await service.check_products(tenant_id, request)
            latencies.append((time.perf_counter() - started) * 1000)

        # Memory is traced in a separate pass: tracemalloc slows every allocation.
        tracemalloc.start()
        for _ in range(200):
            await service.check_products(tenant_id, request)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return latencies[50:], peak


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per case")
    args = parser.parse_args()
    configure_logging("ERROR", "json")

    async with environment() as env, merchant(env, pricing_handler) as base:
        url = base + "/products"
        bare = percentiles(await baseline(url, str(env.ca_file), args.calls))
        full_samples, peak = await through_dispatcher(env, url, args.calls)
        full = percentiles(full_samples)

    for name, stats in (
        ("bare aiohttp POST", bare),
        ("dispatcher products check", full),
    ):
        print(f"{name:<26} " + ", ".join(f"{k} {v:.2f} ms" for k, v in stats.items()))
    print(
        "ratio                      "
        + ", ".join(f"{k} x{full[k] / bare[k]:.2f}" for k in full)
    )
    print(f"traced memory peak during the dispatcher case: {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    asyncio.run(main())
