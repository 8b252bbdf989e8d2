"""The admin webhooks API on SQLite and PostgreSQL, against real HTTPS merchants."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import INTERNAL_AUTH, TenantKeys

WEBHOOKS = "/api/v1/admin/webhooks"


def independent_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Compute the contract's signature without the project's signing module."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_by(secret: str, request: Any) -> bool:
    timestamp = request.headers["X-VIZOCHOK-Timestamp"]
    expected = independent_signature(secret, timestamp, request.body)
    return hmac.compare_digest(expected, request.headers["X-VIZOCHOK-Signature"])


async def patch(client: Any, tenant: TenantKeys, body: Any) -> tuple[int, Any]:
    response = await client.patch(WEBHOOKS, json=body, headers=tenant.auth)
    return response.status, await response.json()


async def get_config(client: Any, tenant: TenantKeys) -> dict[str, Any]:
    response = await client.get(WEBHOOKS, headers=tenant.auth)
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


# --- authentication -------------------------------------------------------


async def test_missing_key_is_401(client):
    """A request without Authorization is rejected with 401."""
    response = await client.get(WEBHOOKS)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "detail" in await response.json()


async def test_unknown_key_is_401(client):
    """A well-formed but unknown key is rejected with 401."""
    response = await client.get(WEBHOOKS, headers={"Authorization": "Bearer sk_nope"})
    assert response.status == 401


async def test_publishable_key_is_403(client, dispatcher, tenant):
    """A key without the admin scope is rejected with 403."""
    key = await dispatcher.repository.create_api_key(
        tenant.tenant_id, "pk_", {"widget"}
    )
    response = await client.get(WEBHOOKS, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 403


async def test_api_key_stored_only_as_hash(dispatcher, tenant):
    """The database holds the SHA-256 of the key, never the key itself."""
    async with dispatcher.repository.engine.connect() as connection:
        rows = (await connection.exec_driver_sql("SELECT key_hash FROM api_keys")).all()
    hashes = {row[0] for row in rows}
    assert hashlib.sha256(tenant.api_key.encode()).hexdigest() in hashes
    assert tenant.api_key not in hashes


# --- GET and PATCH --------------------------------------------------------


async def test_get_defaults(client, tenant):
    """A new tenant has no URLs, no secret and the 5-second timeout."""
    assert await get_config(client, tenant) == {
        "products_url": "",
        "cart_url": "",
        "cart_get_url": "",
        "has_secret": False,
        "timeout_seconds": 5.0,
        "circuit": {"products": "closed", "cart": "closed", "cart_get": "closed"},
    }


async def test_patch_partial_keeps_other_fields(client, tenant, merchant):
    """Fields absent from a PATCH keep their stored values."""
    await patch(client, tenant, {"products_url": merchant.url(), "timeout_seconds": 2})
    status, _ = await patch(client, tenant, {"cart_url": merchant.url("/cart")})
    config = await get_config(client, tenant)
    assert status == 200
    assert config["products_url"] == merchant.url()
    assert config["cart_url"] == merchant.url("/cart")
    assert config["timeout_seconds"] == 2.0


async def test_patch_empty_string_clears_url(client, tenant, merchant):
    """An empty string clears a URL."""
    await patch(client, tenant, {"products_url": merchant.url()})
    await patch(client, tenant, {"products_url": ""})
    assert (await get_config(client, tenant))["products_url"] == ""


async def test_patch_stores_normalised_url(client, tenant, merchant):
    """Host case, a trailing dot and numeric spellings are normalised on save."""
    raw = f"https://2130706433:{merchant.port}/Path?Q=1"
    status, _ = await patch(client, tenant, {"products_url": raw})
    assert status == 200
    stored = (await get_config(client, tenant))["products_url"]
    assert stored == f"https://127.0.0.1:{merchant.port}/Path?Q=1"


async def test_secret_generated_once_and_shown_once(client, tenant, merchant):
    """The first save generates a 64-hex secret and returns it only that time."""
    status, first = await patch(client, tenant, {"products_url": merchant.url()})
    _, second = await patch(client, tenant, {"timeout_seconds": 3})
    assert status == 200
    assert first["ok"] is True
    assert first["has_secret"] is True
    assert len(first["secret"]) == 64
    assert int(first["secret"], 16) >= 0
    assert "secret" not in second
    assert (await get_config(client, tenant))["has_secret"] is True


async def test_get_never_returns_secret(client, tenant):
    """GET reports has_secret, never the secret."""
    _, body = await patch(client, tenant, {"timeout_seconds": 4})
    text = json.dumps(await get_config(client, tenant))
    assert body["secret"] not in text


async def test_user_secret_used_for_signing(client, tenant, merchant):
    """A supplied secret is stored, not echoed, and signs the next call."""
    secret = "merchant-chosen-secret-1234"
    status, body = await patch(
        client, tenant, {"products_url": merchant.url(), "secret": secret}
    )
    await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    assert status == 200
    assert "secret" not in body
    assert signed_by(secret, merchant.requests[-1])


async def test_empty_secret_keeps_current(client, tenant, merchant):
    """secret "" keeps the stored secret."""
    _, first = await patch(client, tenant, {"products_url": merchant.url()})
    await patch(client, tenant, {"secret": ""})
    await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    assert signed_by(first["secret"], merchant.requests[-1])


@pytest.mark.parametrize(
    ("secret", "error_type"),
    [
        ("short", "secret_length"),
        ("x" * 257, "secret_length"),
        ("пароль-пароль-пароль", "secret_characters"),
        ("tab\tinside-the-secret", "secret_characters"),
    ],
)
async def test_invalid_secret_is_422(client, tenant, secret, error_type):
    """A supplied secret must be 16-256 printable ASCII characters."""
    status, body = await patch(client, tenant, {"secret": secret})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "secret"]
    assert body["detail"][0]["type"] == error_type
    assert secret not in json.dumps(body)


async def test_secret_rotation(client, tenant, merchant):
    """Rotation returns a new secret once; later calls are signed with it."""
    _, first = await patch(client, tenant, {"products_url": merchant.url()})
    response = await client.post(f"{WEBHOOKS}/secret/rotate", headers=tenant.auth)
    rotated = (await response.json())["secret"]
    await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    assert response.status == 200
    assert rotated != first["secret"]
    assert signed_by(rotated, merchant.requests[-1])


async def test_concurrent_first_saves_share_one_secret(client, tenant, merchant):
    """Twenty simultaneous PATCHes store one secret, and only that one is shown."""
    results = await asyncio.gather(
        *(patch(client, tenant, {"products_url": merchant.url()}) for _ in range(20))
    )
    shown = {body["secret"] for status, body in results if "secret" in body}
    await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    assert all(status == 200 for status, _ in results)
    assert len(shown) == 1
    assert signed_by(shown.pop(), merchant.requests[-1])


# --- validation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        (
            {"products_url": "http://shop.example/p"},
            ["body", "products_url"],
            "url_scheme",
        ),
        ({"cart_url": "https://10.0.0.1/cart"}, ["body", "cart_url"], "url_private"),
        (
            {"cart_get_url": "https://169.254.169.254/latest"},
            ["body", "cart_get_url"],
            "url_private",
        ),
        (
            {"products_url": "https://localhost/p"},
            ["body", "products_url"],
            "url_localhost",
        ),
        (
            {"products_url": "https://[::ffff:10.1.2.3]/p"},
            ["body", "products_url"],
            "url_private",
        ),
        ({"products_url": "https://0x0a.1/p"}, ["body", "products_url"], "url_private"),
        (
            {"products_url": "https://name.invalid/p"},
            ["body", "products_url"],
            "url_unresolvable",
        ),
        ({"timeout_seconds": 0.4}, ["body", "timeout_seconds"], "value_out_of_range"),
        ({"timeout_seconds": 31}, ["body", "timeout_seconds"], "value_out_of_range"),
        ({"timeout_seconds": "5"}, ["body", "timeout_seconds"], "float_type"),
        ({"timeout_seconds": True}, ["body", "timeout_seconds"], "float_type"),
        ({"products_url": 5}, ["body", "products_url"], "string_type"),
        ({"products_url": None}, ["body", "products_url"], "value_error"),
        ({"unknown": 1}, ["body", "unknown"], "extra_forbidden"),
        ([], ["body"], "model_type"),
    ],
)
async def test_invalid_patch_is_422(client, tenant, body, loc, error_type):
    """Bad input gets 422 with loc naming the field and a stable type."""
    status, answer = await patch(client, tenant, body)
    assert status == 422
    assert answer["detail"][0]["loc"] == loc
    assert answer["detail"][0]["type"] == error_type
    assert answer["detail"][0]["msg"]


async def test_url_error_names_field_and_value(client, tenant):
    """The message names the field and the value, but not a URL's path or query."""
    _, answer = await patch(
        client, tenant, {"products_url": "http://shop.example/hook/tok3n?key=k3y"}
    )
    message = answer["detail"][0]["msg"]
    assert "products_url" in message
    assert "shop.example" in message
    assert "tok3n" not in message
    assert "k3y" not in message


@pytest.mark.parametrize(
    "raw", [b"{", b'{"timeout_seconds": NaN}', b"\xff\xfe", b"", b"[" * 100_000]
)
async def test_malformed_json_is_422(client, tenant, raw):
    """Malformed JSON, NaN, invalid UTF-8 and empty bodies get a 422."""
    response = await client.patch(WEBHOOKS, data=raw, headers=tenant.auth)
    answer = await response.json()
    assert response.status == 422
    assert answer["detail"][0]["loc"][0] == "body"


async def test_invalid_patch_stores_nothing(client, tenant, merchant):
    """One invalid field rejects the whole update, generated secret included."""
    status, answer = await patch(
        client,
        tenant,
        {"products_url": merchant.url(), "cart_url": "ftp://x", "timeout_seconds": 99},
    )
    fields = {item["loc"][1] for item in answer["detail"]}
    assert status == 422
    assert fields == {"cart_url", "timeout_seconds"}
    assert await get_config(client, tenant) == {
        "products_url": "",
        "cart_url": "",
        "cart_get_url": "",
        "has_secret": False,
        "timeout_seconds": 5.0,
        "circuit": {"products": "closed", "cart": "closed", "cart_get": "closed"},
    }


# --- the probe ------------------------------------------------------------


async def test_probe_success(client, tenant, merchant):
    """A 2xx with a valid products body reports ok with status and time."""
    await patch(client, tenant, {"products_url": merchant.url()})
    response = await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    body = await response.json()
    sent = json.loads(merchant.requests[-1].body)
    assert response.status == 200
    assert body["ok"] is True
    assert body["status_code"] == 200
    assert isinstance(body["response_time_ms"], int)
    assert "error" not in body
    assert sent["skus"]
    assert sent["store_id"]


async def test_probe_500_not_retried(client, tenant, merchant):
    """A failing merchant reports the status and code, with one attempt only."""
    merchant.respond = lambda _: web.Response(status=500, text="<html>boom</html>")
    await patch(client, tenant, {"products_url": merchant.url()})
    response = await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    body = await response.json()
    assert body == {
        "ok": False,
        "status_code": 500,
        "response_time_ms": body["response_time_ms"],
        "error": "http_status",
    }
    assert len(merchant.requests) == 1


async def test_probe_invalid_body(client, tenant, merchant):
    """A 200 with an HTML page is invalid_response and never echoed."""
    merchant.respond = lambda _: web.Response(text="<html>secret page</html>")
    await patch(client, tenant, {"products_url": merchant.url()})
    response = await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    body = await response.json()
    assert body["ok"] is False
    assert body["status_code"] == 200
    assert body["error"] == "invalid_response"
    assert "secret page" not in json.dumps(body)


async def test_probe_unreachable_has_null_status(client, tenant, merchant):
    """No response at all gives status_code null."""
    await patch(client, tenant, {"products_url": "https://127.0.0.1:9/p"})
    response = await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    body = await response.json()
    assert body["ok"] is False
    assert body["status_code"] is None
    assert body["error"] == "connection_failed"


async def test_probe_without_url_is_400(client, tenant):
    """Probing an unconfigured webhook is a 400 naming the missing setting."""
    response = await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    body = await response.json()
    assert response.status == 400
    assert "products_url" in body["detail"]


async def test_probe_cart_is_400(client, tenant):
    """The cart webhook is never probed, because it has side effects."""
    response = await client.post(
        f"{WEBHOOKS}/test", json={"webhook": "cart"}, headers=tenant.auth
    )
    body = await response.json()
    assert response.status == 400
    assert "side effects" in body["detail"]


async def test_probe_cart_get(client, tenant, merchant):
    """The cart GET probe sends a signed GET with store and session parameters."""
    merchant.respond = lambda _: web.json_response({"items": []})
    await patch(client, tenant, {"cart_get_url": merchant.url("/cart?shop=1")})
    response = await client.post(
        f"{WEBHOOKS}/test", json={"webhook": "cart_get"}, headers=tenant.auth
    )
    body = await response.json()
    sent = merchant.requests[-1]
    assert body["ok"] is True
    assert sent.method == "GET"
    assert sent.query["shop"] == "1"
    assert "store_id" in sent.query
    assert "session_id" in sent.query


# --- isolation and caching ------------------------------------------------


async def test_tenants_do_not_see_each_other(client, dispatcher, tenant, merchant):
    """Each key reads and changes only its own tenant's settings."""
    other_id, other_key = await dispatcher.repository.create_tenant("Other shop")
    other = TenantKeys(other_id, other_key)
    await patch(client, tenant, {"products_url": merchant.url("/a")})
    await patch(client, other, {"products_url": merchant.url("/b")})
    assert (await get_config(client, tenant))["products_url"] == merchant.url("/a")
    assert (await get_config(client, other))["products_url"] == merchant.url("/b")


async def test_patch_invalidates_cache_at_once(client, tenant, start_merchant):
    """A products check right after a PATCH uses the new URL."""
    first = await start_merchant(None)
    second = await start_merchant(None)
    check = f"/internal/v1/tenants/{tenant.tenant_id}/products/check"
    body = {"store_id": "s", "products": [{"sku": "a"}]}
    await patch(client, tenant, {"products_url": first.url()})
    await client.post(check, json=body, headers=INTERNAL_AUTH)
    await patch(client, tenant, {"products_url": second.url()})
    await client.post(check, json=body, headers=INTERNAL_AUTH)
    assert len(first.requests) == 1
    assert len(second.requests) == 1
