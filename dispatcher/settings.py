"""Service settings, read once from `VIZOCHOK_*` environment variables."""

from __future__ import annotations

import ipaddress
import ssl
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dispatcher.addresses import AddressPolicy, IPNetwork
from dispatcher.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///vizochok.db"
SUPPORTED_DRIVERS = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})
# Settings whose values never appear in an error message.
_SECRET_SETTINGS = frozenset({"internal_token", "encryption_key", "database_url"})


class Settings(BaseSettings):
    """Every setting of the service; see the README for what each one does."""

    model_config = SettingsConfigDict(
        env_prefix="VIZOCHOK_", frozen=True, extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    internal_token: SecretStr | None = None
    encryption_key: SecretStr | None = None
    allow_private_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    extra_ca_file: Path | None = None
    log_format: Literal["console", "json"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Delivery tuning. The contract fixes one retry after 1 second; tests shorten
    # the wait so that retry paths run quickly.
    retry_wait_seconds: float = Field(default=1.0, ge=0, le=60)
    max_skus_per_request: int = Field(default=10, ge=1, le=100)
    # A config change made on another instance reaches this one after at most this
    # long, because cached tenant configs expire.
    config_cache_ttl_seconds: float = Field(default=30.0, ge=0, le=3600)

    # Isolation between tenants. A healthy merchant responds in tens of
    # milliseconds, so 32 calls in flight per host sustain hundreds of calls per
    # second, while a host that hangs ties up at most 32 connections for its
    # timeout. A tenant may use two hosts' worth, so one tenant's burst of
    # concurrent chats cannot monopolise the process either.
    max_concurrent_per_host: int = Field(default=32, ge=1, le=10_000)
    max_concurrent_per_tenant: int = Field(default=64, ge=1, le=10_000)
    # Five failed calls within 30 s open a tenant webhook's circuit for 30 s:
    # enough to ride out one slow minute, few enough that a dead merchant stops
    # costing chats its full timeout within seconds.
    circuit_failure_threshold: int = Field(default=5, ge=1, le=1000)
    circuit_window_seconds: float = Field(default=30.0, gt=0, le=3600)
    circuit_cooldown_seconds: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("allow_private_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            try:
                return tuple(ipaddress.ip_network(item, strict=False) for item in items)
            except ValueError as exc:
                raise ValueError(
                    f"expected comma-separated CIDRs such as 127.0.0.0/8, got {value!r}"
                ) from exc
        return value

    @field_validator("extra_ca_file")
    @classmethod
    def _ca_file_loads(cls, value: Path | None) -> Path | None:
        if value is None:
            return value
        if not value.is_file():
            raise ValueError("no such file")
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(value))
        except ssl.SSLError as exc:
            message = f"not a PEM file of CA certificates ({exc.reason})"
            raise ValueError(message) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        try:
            driver = make_url(value).drivername
        except ArgumentError:
            raise ValueError("not a database URL") from None
        if driver not in SUPPORTED_DRIVERS:
            raise ValueError(
                "use sqlite+aiosqlite:///path.db or "
                f"postgresql+asyncpg://user@host/db, not the driver {driver!r}"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("internal_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @property
    def address_policy(self) -> AddressPolicy:
        return AddressPolicy(exempt_networks=self.allow_private_networks)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def resolved_log_format(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, raising ConfigurationError if bad.

    The message names each invalid variable with its value, except for the token,
    the key and the database URL, which may contain a password.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = "VIZOCHOK_" + field.upper()
            if field in _SECRET_SETTINGS:
                problems.append(f"{name}: {error['msg']}")
            else:
                problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
