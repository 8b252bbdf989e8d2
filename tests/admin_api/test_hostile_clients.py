"""Malformed requests from API clients: clear 4xx answers, nothing leaked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from tests.admin_api.test_cli import free_port
from tests.conftest import INTERNAL_AUTH

WEBHOOKS = "/api/v1/admin/webhooks"
VIZOCHOK = str(Path(sys.executable).with_name("vizochok"))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:9/\ud800",
        "https://127.0.0.1:9/ok\u202egnp.exe",
        "https://127.0.0.1:9/a\u200bb",
        "https://127.0.0.1:9/\ufeff",
        "https://127.0.0.1:9/a\u00a0b",
    ],
)
async def test_invisible_url_characters_422(client, tenant, url):
    """Lone surrogates and invisible format characters in a URL are a 422."""
    body = json.dumps({"products_url": url}).encode()
    response = await client.patch(WEBHOOKS, data=body, headers=tenant.auth)
    answer = await response.json()
    assert response.status == 422
    assert answer["detail"][0]["loc"][0] == "body"


async def test_lone_surrogate_anywhere_is_422(client, tenant):
    """A \\ud800 escape in any string is rejected before it reaches storage."""
    path = f"/internal/v1/tenants/{tenant.tenant_id}/cart"
    body = b'{"action": "clear", "store_id": "s", "session_id": "\\ud800"}'
    response = await client.post(path, data=body, headers=INTERNAL_AUTH)
    answer = await response.json()
    assert response.status == 422
    assert answer["detail"][0]["type"] == "json_invalid"


async def test_non_utf8_authorization_is_401(client):
    """Undecodable bytes in Authorization get 401, not a 500."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /api/v1/admin/webhooks HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer \xff\xfe\xc3\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert b" 401 " in status_line


async def test_probe_fails_on_invalid_entries(client, tenant, merchant):
    """A probe whose answer prices the probe SKUs invalidly is not ok."""

    def respond(request):
        skus = json.loads(request.body)["skus"]
        entries = ",".join(
            f'{{"sku": "{sku}", "price": NaN, "in_stock": true}}' for sku in skus
        )
        body = '{"products": [' + entries + "]}"
        return web.Response(text=body, content_type="application/json")

    merchant.respond = respond
    await client.patch(
        WEBHOOKS, json={"products_url": merchant.url()}, headers=tenant.auth
    )
    response = await client.post(f"{WEBHOOKS}/test", headers=tenant.auth)
    answer = await response.json()
    assert answer["ok"] is False
    assert answer["error"] == "invalid_response"


def test_server_log_hides_rejected_header(tmp_path):
    """A header aiohttp cannot parse is logged as JSON without its content."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIZOCHOK_")}
    environment["VIZOCHOK_LOG_FORMAT"] = "json"
    process = subprocess.Popen(
        [VIZOCHOK, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    secret_key = "sk_thisMustNeverBeLogged123"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health").close()
                break
            except OSError:
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                b"GET /api/v1/admin/webhooks HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + secret_key.encode() + b"\x00\r\n\r\n"
            )
            connection.recv(65536)
        with socket.create_connection(("127.0.0.1", port)) as connection:
            # Declares 1000 bytes, sends 5, then goes away.
            connection.sendall(
                b"PATCH /api/v1/admin/webhooks HTTP/1.1\r\nHost: x\r\n"
                b'Content-Length: 1000\r\n\r\n{"pr'
            )
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)

    lines = [line for line in stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    names = [event["event"] for event in events]
    assert secret_key not in stderr
    assert all(line.startswith("{") for line in lines), lines
    assert "server.request_rejected" in names
    assert "api.unexpected_error" not in names
