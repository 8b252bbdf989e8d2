"""Raw TLS servers for byte-level hostility, and helpers shared by fault tests.

A raw server is an asyncio TLS server on 127.0.0.1 that reads one HTTP request
per connection and then runs a behaviour coroutine, which writes whatever bytes
it likes. aiohttp's own server cannot send malformed or endless responses, so
these servers write HTTP/1.1 by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from tests.conftest import StaticResolver

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
StartRaw = Callable[..., Awaitable["RawServer"]]

# The transport caps a response body at 1 MiB after decompression, so a hostile
# response must not make the dispatcher keep much more than that in memory.
MEMORY_PEAK_LIMIT_BYTES = 8 * 1024 * 1024
# Added to every computed worst-case duration, for slow CI machines and database
# round trips. The bound only guards against a hang and is not a performance test.
SLACK_SECONDS = 2.0


# How long closing raw servers waits for connection handlers to end by themselves.
CLOSE_GRACE_SECONDS = 1.0


def worst_case_seconds(timeout_seconds: float, settings: Settings) -> float:
    """Return the hang guard for one call: two attempts, the retry wait, slack."""
    return 2 * timeout_seconds + settings.retry_wait_seconds + SLACK_SECONDS


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 request and return its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


async def wait_for_client_close(reader: asyncio.StreamReader) -> None:
    """Hold the connection open until the client closes it."""
    while await reader.read(65536):
        pass


@dataclass
class RawServer:
    """Counters of one raw server.

    `connections` counts the TCP connections accepted, TLS failures included, and
    `open_connections` those not yet closed.
    """

    port: int = 0
    connections: int = 0
    open_connections: int = 0

    def url(self, path: str = "/products") -> str:
        return f"https://127.0.0.1:{self.port}{path}"


class RawServers:
    """Raw servers started by one test, whose connections are aborted on close."""

    def __init__(self, default_ssl: ssl.SSLContext) -> None:
        self._default_ssl = default_ssl
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(
        self, behaviour: Behaviour, ssl_context: ssl.SSLContext | None = None
    ) -> RawServer:
        raw = RawServer()

        async def on_connection(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            self._writers.add(writer)
            raw.connections += 1
            raw.open_connections += 1
            try:
                # TLS starts here rather than in start_server, so `connections`
                # also counts connections whose handshake fails.
                await writer.start_tls(ssl_context or self._default_ssl)
                await read_request(reader)
                await behaviour(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                # The client gave up or cut the connection: the usual end here.
                pass
            finally:
                writer.transport.abort()
                raw.open_connections -= 1
                self._writers.discard(writer)
                self._tasks.discard(task)

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        self._servers.append(server)
        raw.port = server.sockets[0].getsockname()[1]
        return raw

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # An aborted connection makes every behaviour's next read or drain fail,
        # so handlers end by themselves. Cancelling them instead makes Python
        # 3.11's start_server log the CancelledError as an unhandled exception.
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=CLOSE_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()


@pytest.fixture
async def start_raw(server_ssl: ssl.SSLContext) -> AsyncIterator[StartRaw]:
    """Start raw TLS servers (the test CA's certificate by default)."""
    servers = RawServers(server_ssl)
    yield servers.start
    await servers.close()


@pytest.fixture
async def local_dispatcher(
    make_settings: Callable[..., Settings], sqlite_url: str, resolver: StaticResolver
) -> AsyncIterator[Dispatcher]:
    """Start an in-process dispatcher on SQLite, where the database is irrelevant."""
    service = Dispatcher.create(make_settings(database_url=sqlite_url), resolver)
    await service.start()
    yield service
    await service.close()


@dataclass
class TracedMemory:
    peak: int = 0


@contextlib.contextmanager
def traced_peak() -> Iterator[TracedMemory]:
    """Trace Python allocations in the block and store their peak in bytes.

    The peak counts only memory allocated inside the block that was alive at the
    same time, including the in-process hostile server's own buffers.
    """
    measured = TracedMemory()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    baseline, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    try:
        yield measured
    finally:
        _, peak = tracemalloc.get_traced_memory()
        measured.peak = peak - baseline
        if started_here:
            tracemalloc.stop()
