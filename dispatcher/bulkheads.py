"""Concurrency limits per merchant host and per tenant.

A merchant that hangs keeps each call's connection and task for the whole
timeout. Without a limit, enough such calls take every pooled connection and
starve all other tenants. Each call therefore needs a slot for its host and one
for its tenant; waiting for them counts against the caller's timeout, because
the caller runs inside that timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT", bound=Hashable)


class _KeyedSemaphores(Generic[KeyT]):
    """One semaphore per key, dropped once no call holds or awaits it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._semaphores: dict[KeyT, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def hold(self, key: KeyT) -> AsyncIterator[None]:
        semaphore, users = self._semaphores.get(
            key, (asyncio.Semaphore(self._limit), 0)
        )
        self._semaphores[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._semaphores[key]
            if users == 1:
                del self._semaphores[key]
            else:
                self._semaphores[key] = (semaphore, users - 1)

    def __len__(self) -> int:
        return len(self._semaphores)


class Bulkheads:
    def __init__(self, per_host: int, per_tenant: int) -> None:
        self._hosts: _KeyedSemaphores[str] = _KeyedSemaphores(per_host)
        self._tenants: _KeyedSemaphores[str] = _KeyedSemaphores(per_tenant)

    @asynccontextmanager
    async def slot(self, tenant_id: str, host: str) -> AsyncIterator[None]:
        """Hold a tenant slot, then a host slot, for the duration of one attempt.

        The tenant slot comes first so a tenant over its limit queues on its own
        semaphore and never occupies a slot of a host that others share.
        """
        async with self._tenants.hold(tenant_id), self._hosts.hold(host):
            yield

    @property
    def tracked_keys(self) -> int:
        """Hosts and tenants with calls in flight or waiting (for leak checks)."""
        return len(self._hosts) + len(self._tenants)
