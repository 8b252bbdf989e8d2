"""Concurrency limits per merchant host and per tenant.

A merchant that hangs keeps each call's connection and task for the whole
timeout. Without a limit, enough such calls take every pooled connection and
starve all other tenants. Each call therefore needs a slot for its host and one
for its tenant. The wait for them runs inside the call's timeout, so it counts
against that timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dispatcher.locks import KeyedLocks


class Bulkheads:
    def __init__(self, per_host: int, per_tenant: int) -> None:
        self._hosts: KeyedLocks[str] = KeyedLocks(lambda: asyncio.Semaphore(per_host))
        self._tenants: KeyedLocks[str] = KeyedLocks(
            lambda: asyncio.Semaphore(per_tenant)
        )

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
