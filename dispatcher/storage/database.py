"""Engine creation for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(database_url: str) -> AsyncEngine:
    """Create the async engine, with SQLite tuned for concurrent writers."""
    if not database_url.startswith("sqlite"):
        # A cart operation holds its connection (and the session's advisory
        # lock) across the merchant call, up to 2 x timeout + 1 s. Fifty
        # connections let that many sessions change carts at once per instance;
        # further ones wait for a connection, up to the 30 s pool timeout.
        return create_async_engine(
            database_url, pool_pre_ping=True, pool_size=10, max_overflow=40
        )

    # A 30 s busy timeout makes a writer wait for the lock instead of failing at
    # once when another request is writing.
    engine = create_async_engine(database_url, connect_args={"timeout": 30})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL lets readers run while one writer commits; foreign keys are off by
    # default in SQLite and the schema relies on them for cascading deletes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
