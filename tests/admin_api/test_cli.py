"""The vizochok console script, run as a subprocess like an operator would."""

from __future__ import annotations

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

VIZOCHOK = str(Path(sys.executable).with_name("vizochok"))


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VIZOCHOK_")
    }
    environment.update(env)
    return subprocess.run(
        [VIZOCHOK, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_tenant_create_prints_json(tmp_path):
    """`tenant create` migrates the default database and prints id and key."""
    result = run(["tenant", "create", "Corner Shop"], tmp_path)
    printed = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert set(printed) == {"tenant_id", "api_key"}
    assert printed["api_key"].startswith("sk_")
    assert (tmp_path / "vizochok.db").exists()
    assert (tmp_path / "vizochok.db.key").exists()


def test_bad_setting_exits_2(tmp_path):
    """A bad variable stops the command with a message naming it."""
    result = run(["migrate"], tmp_path, VIZOCHOK_PORT="eighty")
    assert result.returncode == 2
    assert "VIZOCHOK_PORT" in result.stderr


def test_migrate_postgres(tmp_path, postgres_url):
    """`migrate` applies the migrations to VIZOCHOK_DATABASE_URL."""
    result = run(["migrate"], tmp_path, VIZOCHOK_DATABASE_URL=postgres_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"migrated": True}


def test_serve_starts_and_stops(tmp_path):
    """`serve` responds on /health, warns about exempt networks and stops on SIGTERM."""
    port = free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VIZOCHOK_")
    }
    environment.update(
        VIZOCHOK_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8", VIZOCHOK_LOG_FORMAT="json"
    )
    process = subprocess.Popen(
        [VIZOCHOK, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health"
                ) as answer:
                    body = json.load(answer)
                break
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready") as answer:
            ready = json.load(answer)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)

    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    names = [event["event"] for event in events]
    warning = next(
        e for e in events if e["event"] == "service.private_networks_allowed"
    )
    assert body == {"status": "ok"}
    assert ready == {"status": "ready"}
    assert warning["level"] == "warning"
    assert warning["networks"] == ["127.0.0.0/8"]
    assert "service.started" in names
    assert "service.stopped" in names


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_tenant_name_validated(tmp_path, name):
    """An empty or overlong tenant name is refused."""
    result = run(["tenant", "create", name], tmp_path)
    assert result.returncode == 2
    assert "NAME" in result.stderr
