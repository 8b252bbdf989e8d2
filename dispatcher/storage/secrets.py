"""Encryption of webhook secrets at rest (Fernet: AES-128-CBC with HMAC-SHA256)."""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import make_url

from dispatcher.errors import ConfigurationError, StorageError
from dispatcher.settings import Settings

log = structlog.get_logger("dispatcher.storage")


class SecretBox:
    """Encrypts and decrypts webhook secrets with the service's key."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise ConfigurationError(
                "VIZOCHOK_ENCRYPTION_KEY must be a Fernet key (32 bytes, url-safe "
                "base64); generate one with `python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'`"
            ) from None

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise StorageError(
                "a stored webhook secret cannot be decrypted: VIZOCHOK_ENCRYPTION_KEY "
                "differs from the key it was encrypted with"
            ) from None


def load_secret_box(settings: Settings) -> SecretBox:
    """Return the SecretBox for the configured key.

    Without VIZOCHOK_ENCRYPTION_KEY, an on-disk SQLite database gets a key file
    beside it (``<database>.key``, mode 0600), created on first start. An
    in-memory database gets a key that lives as long as the process. Any other
    database requires the setting.
    """
    if settings.encryption_key is not None:
        return SecretBox(settings.encryption_key.get_secret_value().encode("ascii"))
    if not settings.is_sqlite:
        raise ConfigurationError(
            "VIZOCHOK_ENCRYPTION_KEY is required when VIZOCHOK_DATABASE_URL is not "
            "SQLite; set it to a Fernet key"
        )

    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return SecretBox(Fernet.generate_key())
    return SecretBox(_read_or_create_key_file(Path(database + ".key")))


def _read_or_create_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass

    key = Fernet.generate_key()
    try:
        # O_EXCL: when two processes start at once, one creates the file and the
        # other reads it, so both use the same key.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key + b"\n")
    log.warning("storage.encryption_key_created", path=str(path))
    return key
