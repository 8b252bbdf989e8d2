"""Session carts in the database, with one writer per session at a time.

Operations on one session must reach the merchant and the stored cart one at a
time, in arrival order. Two locks give that:

- an in-process asyncio.Lock per session, which grants waiters in FIFO order, so
  one instance never holds more than one database connection per session;
- on PostgreSQL, a transaction-scoped advisory lock on the session's key, held
  across the merchant call, so instances sharing the database also take turns.

SQLite is the single-instance embedded default, so the in-process lock suffices
there, and the cart is read and written in two short transactions instead of
holding SQLite's database-wide write lock during the merchant call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatcher.cart import CartItem
from dispatcher.errors import StorageError
from dispatcher.locks import KeyedLocks
from dispatcher.storage.tables import SessionCart, utcnow

SessionKey = tuple[str, str, str]


@dataclass
class CartSlot:
    """The locked session cart: `items` is None when the session has no cart yet."""

    items: list[CartItem] | None
    new_items: list[CartItem] | None = field(default=None)

    def replace(self, items: list[CartItem]) -> None:
        """Store `items` when the lock is released."""
        self.new_items = items


class CartStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._locks: KeyedLocks[SessionKey] = KeyedLocks()
        self._is_postgres = engine.dialect.name == "postgresql"

    async def read(self, key: SessionKey) -> list[CartItem] | None:
        """Return the stored cart, or None if the session never had one."""
        try:
            async with self._sessions() as session:
                return await _load(session, key)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"reading a session cart failed: {type(exc).__name__}"
            ) from exc

    @asynccontextmanager
    async def locked(self, key: SessionKey) -> AsyncIterator[CartSlot]:
        """Hold the session's lock; a replacement set on the slot is stored on exit.

        If the body raises, nothing is stored.
        """
        async with self._locks.hold(key):
            try:
                if self._is_postgres:
                    async with self._postgres_locked(key) as slot:
                        yield slot
                else:
                    async with self._sqlite_locked(key) as slot:
                        yield slot
            except SQLAlchemyError as exc:
                raise StorageError(
                    f"updating a session cart failed: {type(exc).__name__}"
                ) from exc

    @asynccontextmanager
    async def _postgres_locked(self, key: SessionKey) -> AsyncIterator[CartSlot]:
        async with self._sessions() as session, session.begin():
            # hashtextextended gives a 64-bit key; a collision between two
            # sessions only makes them take turns, it never mixes their carts.
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": "\x1f".join(("cart", *key))},
            )
            slot = CartSlot(await _load(session, key))
            yield slot
            if slot.new_items is not None:
                await _store(session, key, slot.new_items, postgres=True)

    @asynccontextmanager
    async def _sqlite_locked(self, key: SessionKey) -> AsyncIterator[CartSlot]:
        async with self._sessions() as session:
            slot = CartSlot(await _load(session, key))
        yield slot
        if slot.new_items is not None:
            async with self._sessions() as session, session.begin():
                await _store(session, key, slot.new_items, postgres=False)


async def _load(session: AsyncSession, key: SessionKey) -> list[CartItem] | None:
    tenant_id, store_id, session_id = key
    raw = await session.scalar(
        select(SessionCart.items).where(
            SessionCart.tenant_id == tenant_id,
            SessionCart.store_id == store_id,
            SessionCart.session_id == session_id,
        )
    )
    if raw is None:
        return None
    return [CartItem.from_json(item) for item in json.loads(raw)]


async def _store(
    session: AsyncSession, key: SessionKey, items: list[CartItem], *, postgres: bool
) -> None:
    tenant_id, store_id, session_id = key
    encoded = json.dumps([item.to_json() for item in items], ensure_ascii=False)
    insert = postgres_insert if postgres else sqlite_insert
    statement = insert(SessionCart).values(
        tenant_id=tenant_id,
        store_id=store_id,
        session_id=session_id,
        items=encoded,
        updated_at=utcnow(),
        version=1,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "store_id", "session_id"],
        set_={
            "items": statement.excluded["items"],
            "updated_at": statement.excluded.updated_at,
            "version": SessionCart.version + 1,
        },
    )
    await session.execute(statement)
