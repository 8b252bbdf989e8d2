"""The tenant config cache: single loads, invalidation, cross-instance notices."""

from __future__ import annotations

import asyncio
from typing import Any

from dispatcher.configcache import ConfigCache
from dispatcher.service import Dispatcher
from dispatcher.webhook_settings import WebhookSettingsUpdate


class CountingRepository:
    """Wraps the real repository and counts config loads."""

    def __init__(self, repository: Any) -> None:
        self.repository = repository
        self.loads = 0

    async def load_config(self, tenant_id: str) -> Any:
        self.loads += 1
        await asyncio.sleep(0.01)
        return await self.repository.load_config(tenant_id)


async def test_concurrent_misses_load_once(dispatcher, tenant):
    """Fifty simultaneous misses for one tenant share one database load."""
    counting = CountingRepository(dispatcher.repository)
    cache = ConfigCache(counting, ttl_seconds=60)  # type: ignore[arg-type]
    configs = await asyncio.gather(*(cache.get(tenant.tenant_id) for _ in range(50)))
    assert counting.loads == 1
    assert {config.tenant_id for config in configs} == {tenant.tenant_id}


async def test_entries_expire_after_ttl(dispatcher, tenant):
    """An entry older than the TTL is loaded again."""
    now = [0.0]
    counting = CountingRepository(dispatcher.repository)
    cache = ConfigCache(counting, ttl_seconds=30, clock=lambda: now[0])  # type: ignore[arg-type]
    await cache.get(tenant.tenant_id)
    now[0] = 29.0
    await cache.get(tenant.tenant_id)
    now[0] = 31.0
    await cache.get(tenant.tenant_id)
    assert counting.loads == 2


async def test_invalidate_during_load_not_joined(dispatcher, tenant):
    """A caller arriving after an invalidation never gets the older load."""
    counting = CountingRepository(dispatcher.repository)
    cache = ConfigCache(counting, ttl_seconds=60)  # type: ignore[arg-type]
    first = asyncio.create_task(cache.get(tenant.tenant_id))
    await asyncio.sleep(0)
    cache.invalidate(tenant.tenant_id)
    await cache.get(tenant.tenant_id)
    await first
    assert counting.loads == 2
    assert len(cache) == 1


async def test_notify_reaches_other_instance(
    make_settings, postgres_url, resolver, merchant
):
    """A change through one instance clears the other's cache via LISTEN/NOTIFY."""
    settings = make_settings(database_url=postgres_url, config_cache_ttl_seconds=3600)
    first = Dispatcher.create(settings, resolver)
    second = Dispatcher.create(settings, resolver)
    await first.start()
    await second.start()
    try:
        assert second.listener is not None
        await asyncio.wait_for(second.listener.connected.wait(), 10)
        tenant_id, _ = await first.repository.create_tenant("Shared")
        assert (await second.get_config(tenant_id)).products_url == ""

        await first.update_config(
            tenant_id, WebhookSettingsUpdate(products_url=merchant.url())
        )
        for _ in range(100):
            if len(second.configs) == 0:
                break
            await asyncio.sleep(0.05)

        assert (await second.get_config(tenant_id)).products_url == merchant.url()
    finally:
        await first.close()
        await second.close()
