"""Bearer authentication for the admin API (tenant keys) and the internal API."""

from __future__ import annotations

import hmac

from aiohttp import web

from admin_api.errors import HTTPError
from admin_api.keys import DISPATCHER, SETTINGS
from dispatcher.storage.repository import ADMIN_SCOPE

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(request: web.Request) -> str | None:
    """Return the Bearer token, or None when the header is missing or malformed.

    Keys and tokens are ASCII. aiohttp decodes other header bytes with
    surrogate escapes, which would fail later when the token is hashed.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii():
        return None
    return token


async def require_admin(request: web.Request) -> str:
    """Return the tenant id of the request's admin key, or raise 401 or 403."""
    token = bearer_token(request)
    if token is None:
        raise HTTPError(
            401, "Not authenticated: send Authorization: Bearer sk_...", _CHALLENGE
        )
    identity = await request.app[DISPATCHER].repository.authenticate(token)
    if identity is None:
        raise HTTPError(401, "Invalid API key", _CHALLENGE)
    if ADMIN_SCOPE not in identity.scopes:
        raise HTTPError(403, "This API key lacks the admin scope; use a secret sk_ key")
    return identity.tenant_id


def require_internal(request: web.Request) -> None:
    """Raise unless the request carries the internal service token."""
    expected = request.app[SETTINGS].internal_token
    if expected is None:
        raise HTTPError(
            503,
            "The internal API is disabled: set VIZOCHOK_INTERNAL_TOKEN to enable it",
        )
    token = bearer_token(request)
    if token is None:
        raise HTTPError(
            401, "Not authenticated: send Authorization: Bearer <token>", _CHALLENGE
        )
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise HTTPError(401, "Invalid internal token", _CHALLENGE)
