"""Concurrency limits per host and per tenant."""

from __future__ import annotations

import asyncio

from dispatcher.bulkheads import Bulkheads


async def peak_concurrency(bulkheads: Bulkheads, calls: list[tuple[str, str]]) -> int:
    running = peak = 0

    async def one(tenant_id: str, host: str) -> None:
        nonlocal running, peak
        async with bulkheads.slot(tenant_id, host):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(one(tenant, host) for tenant, host in calls))
    return peak


async def test_host_limit():
    """No more calls than the host limit run at once against one host."""
    bulkheads = Bulkheads(per_host=3, per_tenant=100)
    calls = [(f"tenant-{i}", "shop.test:443") for i in range(20)]
    assert await peak_concurrency(bulkheads, calls) == 3


async def test_tenant_limit():
    """No more calls than the tenant limit run at once for one tenant."""
    bulkheads = Bulkheads(per_host=100, per_tenant=2)
    calls = [("tenant-1", f"host-{i}:443") for i in range(20)]
    assert await peak_concurrency(bulkheads, calls) == 2


async def test_other_hosts_not_limited():
    """A full host does not hold back calls to other hosts."""
    bulkheads = Bulkheads(per_host=1, per_tenant=100)
    calls = [(f"tenant-{i}", f"host-{i}:443") for i in range(10)]
    assert await peak_concurrency(bulkheads, calls) == 10


async def test_bookkeeping_released():
    """Semaphores are dropped once no call holds or awaits them."""
    bulkheads = Bulkheads(per_host=2, per_tenant=2)
    await peak_concurrency(bulkheads, [("t", "h:443")] * 10)
    assert bulkheads.tracked_keys == 0


async def test_cancelled_waiter_released():
    """A call cancelled while waiting for a slot leaves no bookkeeping behind."""
    bulkheads = Bulkheads(per_host=1, per_tenant=10)
    release = asyncio.Event()

    async def holder() -> None:
        async with bulkheads.slot("t", "h:443"):
            await release.wait()

    async def waiter() -> None:
        async with bulkheads.slot("t", "h:443"):
            pass

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    waiting.cancel()
    release.set()
    await holding
    await asyncio.gather(waiting, return_exceptions=True)
    assert bulkheads.tracked_keys == 0
