"""Per-key asyncio locks and semaphores that are dropped when no task uses them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT", bound=Hashable)
Primitive = asyncio.Lock | asyncio.Semaphore


class KeyedLocks(Generic[KeyT]):
    """One lock (or semaphore, from `factory`) per key, FIFO for its waiters.

    Memory stays proportional to the keys in use: an entry is dropped once no
    task holds or awaits it.
    """

    def __init__(self, factory: Callable[[], Primitive] = asyncio.Lock) -> None:
        self._factory = factory
        self._entries: dict[KeyT, tuple[Primitive, int]] = {}

    @asynccontextmanager
    async def hold(self, key: KeyT) -> AsyncIterator[None]:
        primitive, users = self._entries.get(key) or (self._factory(), 0)
        self._entries[key] = (primitive, users + 1)
        try:
            async with primitive:
                yield
        finally:
            primitive, users = self._entries[key]
            if users == 1:
                del self._entries[key]
            else:
                self._entries[key] = (primitive, users - 1)

    def __len__(self) -> int:
        return len(self._entries)
