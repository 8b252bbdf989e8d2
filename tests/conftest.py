"""Shared fixtures: real HTTPS merchants on loopback and real databases.

Merchants are aiohttp servers with trustme certificates for 127.0.0.1. The
dispatcher reaches them through the development allowance for 127.0.0.0/8 and
trusts the test CA through VIZOCHOK_EXTRA_CA_FILE, exactly as an operator would
configure a development machine. Databases are a fresh SQLite file and a fresh
PostgreSQL database per test session, both migrated with Alembic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from admin_api.app import create_app
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from dispatcher.storage.migrate import upgrade_to_head

POSTGRES_ADMIN_DSN = os.environ.get(
    "VIZOCHOK_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
# CI sets this so that an unreachable PostgreSQL fails the run instead of skipping.
REQUIRE_POSTGRES = os.environ.get("VIZOCHOK_TEST_REQUIRE_POSTGRES") == "1"
INTERNAL_TOKEN = "internal-test-token"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


# --- certificates ---------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "merchant.test").configure_cert(context)
    return context


# --- merchants ------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


Responder = Callable[
    [RecordedRequest], Awaitable[web.StreamResponse] | web.StreamResponse
]


@dataclass
class Merchant:
    """A real HTTPS server on loopback that records every request it gets."""

    port: int
    requests: list[RecordedRequest] = field(default_factory=list)
    respond: Responder | None = None

    def url(self, path: str = "/products") -> str:
        return f"https://127.0.0.1:{self.port}{path}"


async def _default_respond(_request: RecordedRequest) -> web.StreamResponse:
    return web.json_response({"products": []})


@pytest.fixture
async def start_merchant(
    server_ssl: ssl.SSLContext,
) -> AsyncIterator[Callable[[Responder | None], Awaitable[Merchant]]]:
    runners: list[web.AppRunner] = []

    async def start(respond: Responder | None = None) -> Merchant:
        merchant = Merchant(port=0, respond=respond)

        async def handle(request: web.Request) -> web.StreamResponse:
            recorded = RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
                at=asyncio.get_running_loop().time(),
            )
            merchant.requests.append(recorded)
            result = (merchant.respond or _default_respond)(recorded)
            if not isinstance(result, web.StreamResponse):
                result = await result
            return result

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        runners.append(runner)
        merchant.port = runner.addresses[0][1]
        return merchant

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def merchant(
    start_merchant: Callable[[Responder | None], Awaitable[Merchant]],
) -> Merchant:
    return await start_merchant(None)


# --- name resolution ------------------------------------------------------


class StaticResolver(AbstractResolver):
    """A resolver answering from a table, so tests send no DNS query anywhere.

    It stands in for the system resolver at save time and connect time alike;
    changing `table` between calls simulates DNS rebinding.
    """

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table if table is not None else {"shop.test": ["127.0.0.1"]}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise OSError(socket.EAI_NONAME, f"unknown test host {host!r}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
def resolver() -> StaticResolver:
    return StaticResolver()


# --- databases ------------------------------------------------------------


def _postgres_available() -> bool:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not _postgres_available():
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_DSN}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)

    name = f"vizochok_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "")
    url = f"postgresql+asyncpg://{base}/{name}"
    upgrade_to_head(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "vizochok.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_to_head(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses the database runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return Fernet.generate_key().decode()


# --- the service ----------------------------------------------------------


@pytest.fixture
def make_settings(ca_file: Path, encryption_key: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": "sqlite+aiosqlite:///:memory:",
            "allow_private_networks": (LOOPBACK,),
            "extra_ca_file": ca_file,
            "internal_token": INTERNAL_TOKEN,
            "encryption_key": encryption_key,
            "retry_wait_seconds": 0.05,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def dispatcher(
    settings: Settings, resolver: StaticResolver
) -> AsyncIterator[Dispatcher]:
    service = Dispatcher.create(settings, resolver)
    await service.start()
    yield service
    await service.close()


@pytest.fixture
async def client(
    settings: Settings, dispatcher: Dispatcher
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings, dispatcher)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@dataclass(frozen=True)
class TenantKeys:
    tenant_id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
async def tenant(dispatcher: Dispatcher) -> TenantKeys:
    tenant_id, api_key = await dispatcher.repository.create_tenant("Test shop")
    return TenantKeys(tenant_id, api_key)


INTERNAL_AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
