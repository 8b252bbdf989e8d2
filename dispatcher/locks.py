"""Per-key asyncio locks that disappear when nobody holds or awaits them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT", bound=Hashable)


class KeyedLocks(Generic[KeyT]):
    """One FIFO lock per key; memory stays proportional to keys in use."""

    def __init__(self) -> None:
        self._locks: dict[KeyT, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: KeyT) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
