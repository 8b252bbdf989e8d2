"""In-memory cache of tenant webhook configs, so calls make no database query.

Entries expire after a TTL, which bounds how stale a config changed on another
instance can be here. A change made through this instance invalidates its entry at
once. Concurrent misses for one tenant share a single database load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from dispatcher.storage.repository import Repository, TenantConfig


class ConfigCache:
    def __init__(
        self,
        repository: Repository,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, TenantConfig]] = {}
        self._loading: dict[str, asyncio.Task[TenantConfig]] = {}
        # Bumped by every invalidation, so a load that started before a change
        # does not store the config it read before that change.
        self._generation = 0

    async def get(self, tenant_id: str) -> TenantConfig:
        """Return the tenant's config, loading it once if missing or expired.

        Raises TenantNotFound for an unknown tenant (never cached).
        """
        entry = self._entries.get(tenant_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]

        task = self._loading.get(tenant_id)
        if task is None:
            # The load runs as its own task, so a caller that is cancelled (its
            # chat request went away) does not fail the others waiting on it.
            task = asyncio.create_task(self._load(tenant_id))
            self._loading[tenant_id] = task
            task.add_done_callback(lambda done: self._forget_load(tenant_id, done))
        return await asyncio.shield(task)

    async def _load(self, tenant_id: str) -> TenantConfig:
        generation = self._generation
        config = await self._repository.load_config(tenant_id)
        if generation == self._generation:
            self._entries[tenant_id] = (self._clock() + self._ttl, config)
        return config

    def _forget_load(self, tenant_id: str, task: asyncio.Task[TenantConfig]) -> None:
        if self._loading.get(tenant_id) is task:
            del self._loading[tenant_id]

    def invalidate(self, tenant_id: str) -> None:
        """Drop the tenant's entry; the next call reads the database again."""
        self._generation += 1
        self._entries.pop(tenant_id, None)
        # A load already under way may have read the old row: later callers must
        # not join it.
        self._loading.pop(tenant_id, None)

    def clear(self) -> None:
        """Drop every entry, for when invalidations may have been missed."""
        self._generation += 1
        self._entries.clear()
        self._loading.clear()

    def __len__(self) -> int:
        return len(self._entries)
