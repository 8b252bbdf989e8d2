"""Queries over tenants, API keys and webhook configs.

SQLAlchemy errors are translated into StorageError here and nowhere else.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatcher.errors import StorageError, TenantNotFound
from dispatcher.storage.notify import CONFIG_CHANNEL
from dispatcher.storage.secrets import SecretBox
from dispatcher.storage.tables import ApiKey, Tenant, WebhookConfig, utcnow

ADMIN_SCOPE = "admin"
DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class TenantConfig:
    """A tenant's webhook settings with the secret decrypted, as calls need them."""

    tenant_id: str
    products_url: str
    cart_url: str
    cart_get_url: str
    timeout_seconds: float
    secret: str | None = field(repr=False)
    version: int


@dataclass(frozen=True)
class ApiKeyIdentity:
    tenant_id: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class ConfigUpdate:
    """The result of a webhook config update; `generated_secret` is set only once."""

    has_secret: bool
    generated_secret: str | None = field(repr=False)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Repository:
    def __init__(self, engine: AsyncEngine, secret_box: SecretBox) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._secret_box = secret_box

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(
                f"database operation failed: {type(exc).__name__}"
            ) from exc

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def dispose(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        async with self._transaction() as session:
            await session.execute(text("SELECT 1"))

    async def create_tenant(self, name: str) -> tuple[str, str]:
        """Create a tenant with default webhook settings and an admin key.

        Returns the tenant id and the plaintext key, which is never stored.
        """
        tenant_id = str(uuid.uuid4())
        async with self._transaction() as session:
            session.add(Tenant(id=tenant_id, name=name))
            session.add(
                WebhookConfig(
                    tenant_id=tenant_id, timeout_seconds=DEFAULT_TIMEOUT_SECONDS
                )
            )
        key = await self.create_api_key(tenant_id, "sk_", {ADMIN_SCOPE})
        return tenant_id, key

    async def create_api_key(
        self, tenant_id: str, prefix: str, scopes: set[str]
    ) -> str:
        key = prefix + secrets.token_urlsafe(32)
        async with self._transaction() as session:
            if await session.get(Tenant, tenant_id) is None:
                raise TenantNotFound(tenant_id)
            session.add(
                ApiKey(
                    tenant_id=tenant_id,
                    key_hash=hash_api_key(key),
                    prefix=key[:10],
                    scopes=" ".join(sorted(scopes)),
                )
            )
        return key

    async def authenticate(self, key: str) -> ApiKeyIdentity | None:
        """Return the identity behind an API key, or None for an unknown key."""
        async with self._transaction() as session:
            row = await session.scalar(
                select(ApiKey).where(ApiKey.key_hash == hash_api_key(key))
            )
        if row is None:
            return None
        return ApiKeyIdentity(row.tenant_id, frozenset(row.scopes.split()))

    async def tenant_exists(self, tenant_id: str) -> bool:
        async with self._transaction() as session:
            return await session.get(Tenant, tenant_id) is not None

    async def load_config(self, tenant_id: str) -> TenantConfig:
        # Tenant ids are UUIDs. Anything else (a NUL byte, which PostgreSQL cannot
        # even compare, or 5,000 characters) cannot name a tenant.
        if not _is_uuid(tenant_id):
            raise TenantNotFound(tenant_id)
        async with self._transaction() as session:
            row = await session.get(WebhookConfig, tenant_id)
        if row is None:
            raise TenantNotFound(tenant_id)
        secret = None
        if row.secret_encrypted is not None:
            secret = self._secret_box.decrypt(row.secret_encrypted)
        return TenantConfig(
            tenant_id=row.tenant_id,
            products_url=row.products_url,
            cart_url=row.cart_url,
            cart_get_url=row.cart_get_url,
            timeout_seconds=row.timeout_seconds,
            secret=secret,
            version=row.version,
        )

    async def update_config(
        self, tenant_id: str, values: dict[str, Any], secret: str | None
    ) -> ConfigUpdate:
        """Apply validated changes in one statement and return the secret state.

        `secret` replaces the stored secret when given. Otherwise a tenant without
        a secret gets a generated one. The generated secret is written with
        COALESCE in the same UPDATE, so when concurrent requests race, the first
        committed one wins and the rest keep its secret: the row lock (PostgreSQL)
        or the database write lock (SQLite) serialises the UPDATEs.
        """
        generated = secrets.token_hex(32) if secret is None else None
        candidate = self._secret_box.encrypt(secret or generated or "")
        new_secret = (
            candidate
            if generated is None
            else func.coalesce(WebhookConfig.secret_encrypted, candidate)
        )
        statement = (
            update(WebhookConfig)
            .where(WebhookConfig.tenant_id == tenant_id)
            .values(
                **values,
                secret_encrypted=new_secret,
                updated_at=utcnow(),
                version=WebhookConfig.version + 1,
            )
            .returning(WebhookConfig.secret_encrypted)
        )
        async with self._transaction() as session:
            stored = await session.scalar(statement)
            if stored is None:
                raise TenantNotFound(tenant_id)
            await self._notify_change(session, tenant_id)
        used_ours = generated is not None and stored == candidate
        return ConfigUpdate(
            has_secret=True, generated_secret=generated if used_ours else None
        )

    async def rotate_secret(self, tenant_id: str) -> str:
        generated = secrets.token_hex(32)
        statement = (
            update(WebhookConfig)
            .where(WebhookConfig.tenant_id == tenant_id)
            .values(
                secret_encrypted=self._secret_box.encrypt(generated),
                updated_at=utcnow(),
                version=WebhookConfig.version + 1,
            )
            .returning(WebhookConfig.tenant_id)
        )
        async with self._transaction() as session:
            if await session.scalar(statement) is None:
                raise TenantNotFound(tenant_id)
            await self._notify_change(session, tenant_id)
        return generated

    async def _notify_change(self, session: AsyncSession, tenant_id: str) -> None:
        # PostgreSQL delivers the notification only if this transaction commits.
        if self._engine.dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_notify(:channel, :tenant_id)"),
                {"channel": CONFIG_CHANNEL, "tenant_id": tenant_id},
            )
