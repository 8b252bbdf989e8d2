"""Cross-instance cache invalidation through PostgreSQL LISTEN/NOTIFY.

Every config change sends a notification on CONFIG_CHANNEL in the transaction
that stores it, so other instances hear of it only once it is committed. Each
instance keeps one listening connection. While that connection is down,
notifications are lost, so every (re)connect clears the whole cache; the cache
TTL bounds staleness in the meantime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog
from sqlalchemy.engine import make_url

log = structlog.get_logger("dispatcher.storage")

CONFIG_CHANNEL = "vizochok_config_changed"
_RECONNECT_DELAYS_SECONDS = (1, 2, 5, 10, 30)


class ConfigChangeListener:
    """Calls `on_change(tenant_id)` for each notification, `on_reset()` on connect."""

    def __init__(
        self,
        database_url: str,
        on_change: Callable[[str], None],
        on_reset: Callable[[], None],
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._on_change = on_change
        self._on_reset = on_reset
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="config-change-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_until_lost()
                failures = 0
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                delay = _RECONNECT_DELAYS_SECONDS[
                    min(failures, len(_RECONNECT_DELAYS_SECONDS) - 1)
                ]
                failures += 1
                log.warning(
                    "storage.listener_failed",
                    error=type(exc).__name__,
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)

    async def _listen_until_lost(self) -> None:
        connection = await asyncpg.connect(self._dsn, timeout=10)
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(CONFIG_CHANNEL, self._notified)
            self._on_reset()
            self.connected.set()
            await lost.wait()
            log.warning("storage.listener_disconnected")
        finally:
            self.connected.clear()
            await connection.close()

    def _notified(
        self, _connection: object, _pid: int, _channel: str, payload: str
    ) -> None:
        self._on_change(payload)
