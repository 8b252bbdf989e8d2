"""Validation of a tenant's webhook settings before they are stored."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver

from dispatcher.addresses import AddressPolicy
from dispatcher.errors import InvalidInput, InvalidInputs
from dispatcher.urlpolicy import validate_webhook_url

URL_FIELDS = ("products_url", "cart_url", "cart_get_url")
MIN_TIMEOUT_SECONDS = 0.5
MAX_TIMEOUT_SECONDS = 30.0
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256


@dataclass(frozen=True)
class WebhookSettingsUpdate:
    """A partial update: None means "keep the stored value"."""

    products_url: str | None = None
    cart_url: str | None = None
    cart_get_url: str | None = None
    secret: str | None = None
    timeout_seconds: float | None = None


async def validate_update(
    update: WebhookSettingsUpdate,
    policy: AddressPolicy,
    resolver: AbstractResolver | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Check every field and return the column values and the new secret.

    URLs are normalised and their hosts resolved concurrently. Raises
    InvalidInputs listing every invalid field, so nothing is stored unless the
    whole update is valid.
    """
    errors: list[InvalidInput] = []
    values: dict[str, Any] = {}

    checks = {
        name: getattr(update, name)
        for name in URL_FIELDS
        if getattr(update, name) not in (None, "")
    }
    outcomes = await asyncio.gather(
        *(
            validate_webhook_url(name, raw, policy, resolver=resolver)
            for name, raw in checks.items()
        ),
        return_exceptions=True,
    )
    for name in URL_FIELDS:
        raw = getattr(update, name)
        if raw == "":
            values[name] = ""
    for name, outcome in zip(checks, outcomes, strict=True):
        if isinstance(outcome, InvalidInput):
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            values[name] = outcome

    if update.timeout_seconds is not None:
        try:
            values["timeout_seconds"] = check_timeout(update.timeout_seconds)
        except InvalidInput as exc:
            errors.append(exc)

    secret = update.secret or None
    if secret is not None:
        try:
            check_secret(secret)
        except InvalidInput as exc:
            errors.append(exc)

    if errors:
        raise InvalidInputs(errors)
    return values, secret


def check_timeout(value: float) -> float:
    if (
        not math.isfinite(value)
        or not MIN_TIMEOUT_SECONDS <= value <= MAX_TIMEOUT_SECONDS
    ):
        raise InvalidInput(
            "timeout_seconds",
            f"timeout_seconds must be between {MIN_TIMEOUT_SECONDS} and "
            f"{MAX_TIMEOUT_SECONDS} seconds, got {value}",
            "value_out_of_range",
        )
    return float(value)


def check_secret(secret: str) -> None:
    """Raise unless `secret` is 16 to 256 printable ASCII characters.

    The message states the length and the rule, never the value.
    """
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise InvalidInput(
            "secret",
            f"secret must be {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters, "
            f"got {len(secret)}",
            "secret_length",
        )
    if not all(" " <= character <= "~" for character in secret):
        raise InvalidInput(
            "secret",
            "secret must contain only printable ASCII characters (space to '~')",
            "secret_characters",
        )
