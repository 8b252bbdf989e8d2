"""Settings from VIZOCHOK_* variables, and the errors for bad values."""

from __future__ import annotations

import ipaddress

import pytest

from dispatcher.errors import ConfigurationError
from dispatcher.settings import load_settings


def test_defaults(monkeypatch):
    """Without variables the service uses the embedded SQLite default."""
    for name in ("DATABASE_URL", "ALLOW_PRIVATE_NETWORKS", "INTERNAL_TOKEN"):
        monkeypatch.delenv(f"VIZOCHOK_{name}", raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///vizochok.db"
    assert settings.allow_private_networks == ()
    assert settings.internal_token is None
    assert settings.port == 8080


def test_private_networks_parsed(monkeypatch):
    """A comma-separated list becomes networks."""
    monkeypatch.setenv("VIZOCHOK_ALLOW_PRIVATE_NETWORKS", "127.0.0.0/8, ::1/128")
    settings = load_settings()
    assert settings.allow_private_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VIZOCHOK_ALLOW_PRIVATE_NETWORKS", "127.0.0.0/8,not-a-network"),
        ("VIZOCHOK_PORT", "eighty"),
        ("VIZOCHOK_PORT", "70000"),
        ("VIZOCHOK_LOG_LEVEL", "LOUD"),
        ("VIZOCHOK_EXTRA_CA_FILE", "/nonexistent/ca.pem"),
        ("VIZOCHOK_RETRY_WAIT_SECONDS", "-1"),
    ],
)
def test_bad_value_names_variable(monkeypatch, variable, value):
    """A bad value fails with a message naming the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert variable in str(caught.value)


def test_error_hides_secret_values(monkeypatch):
    """A bad encryption key is reported without echoing it."""
    from dispatcher.storage.secrets import load_secret_box

    monkeypatch.setenv("VIZOCHOK_ENCRYPTION_KEY", "not-a-fernet-key-value")
    with pytest.raises(ConfigurationError) as caught:
        load_secret_box(load_settings())
    assert "VIZOCHOK_ENCRYPTION_KEY" in str(caught.value)
    assert "not-a-fernet-key-value" not in str(caught.value)


def test_postgres_requires_key(monkeypatch):
    """PostgreSQL without VIZOCHOK_ENCRYPTION_KEY is refused at start."""
    from dispatcher.storage.secrets import load_secret_box

    monkeypatch.setenv("VIZOCHOK_DATABASE_URL", "postgresql+asyncpg://u@127.0.0.1/x")
    monkeypatch.delenv("VIZOCHOK_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        load_secret_box(load_settings())
    assert "VIZOCHOK_ENCRYPTION_KEY" in str(caught.value)


def test_sqlite_key_file_created_once(tmp_path):
    """The embedded default creates a 0600 key file beside the database, once."""
    from dispatcher.storage.secrets import load_secret_box

    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    first = load_secret_box(load_settings(database_url=url, encryption_key=None))
    token = first.encrypt("s3cret-value-123")
    second = load_secret_box(load_settings(database_url=url, encryption_key=None))
    key_file = tmp_path / "shop.db.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert second.decrypt(token) == "s3cret-value-123"


def test_ca_file_must_be_pem(monkeypatch, tmp_path):
    """A CA file that holds no certificate is refused with its path."""
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("hello\n")
    monkeypatch.setenv("VIZOCHOK_EXTRA_CA_FILE", str(bogus))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "VIZOCHOK_EXTRA_CA_FILE" in str(caught.value)
    assert str(bogus) in str(caught.value)


def test_unsupported_database_driver(monkeypatch):
    """Only aiosqlite and asyncpg URLs are accepted."""
    monkeypatch.setenv("VIZOCHOK_DATABASE_URL", "mysql://root@127.0.0.1/x")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "VIZOCHOK_DATABASE_URL" in str(caught.value)
    assert "'mysql'" in str(caught.value)


def test_log_level_any_case(monkeypatch):
    """VIZOCHOK_LOG_LEVEL=debug is read as DEBUG."""
    monkeypatch.setenv("VIZOCHOK_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
