"""`vizochok demo`, run in-process and as the installed console script."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from admin_api import demo
from admin_api.sample_merchant import SampleMerchant
from dispatcher.logging import configure_logging

# A generated webhook secret is 64 lowercase hex characters.
FULL_SECRET = re.compile(r"\b[0-9a-f]{64}\b")
MASKED_SECRET = re.compile(r"\b[0-9a-f]{6}\*{58}(?!\*)")


@pytest.fixture(autouse=True)
def isolated_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let the demo configure structlog without affecting later tests.

    configure_logging caches each logger on first use and binds it to the current
    sys.stderr, which capsys closes after the test. The demo gets the same
    configuration with caching turned off, and the old one is restored after.
    """
    saved = structlog.get_config()

    def configure_without_cache(level: str, log_format: str) -> None:
        configure_logging(level, log_format)  # type: ignore[arg-type]
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(demo, "configure_logging", configure_without_cache)
    yield
    structlog.configure(**saved)


async def test_demo_succeeds(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo returns 0 and reports the filtered products."""
    monkeypatch.chdir(tmp_path)

    code = await demo.run_demo()
    output = capsys.readouterr().out

    assert code == 0
    assert "Demo finished: every step succeeded." in output
    unavailable = output.split("Unavailable (never shown to the customer):")[1]
    assert re.search(r"yogurt-001\s+out_of_stock", unavailable)
    assert re.search(r"cheese-404\s+not_returned", unavailable)
    assert re.search(r"kefir-001 .*42\.00 instead of 52\.00 \(-19%\)", output)
    assert re.search(r"хліб-001 .*32\.00", output)


async def test_demo_masks_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The generated secret appears only masked, and never in full."""
    monkeypatch.chdir(tmp_path)

    await demo.run_demo()
    captured = capsys.readouterr()

    assert len(MASKED_SECRET.findall(captured.out)) == 1
    assert not FULL_SECRET.search(captured.out)
    assert not FULL_SECRET.search(captured.err)


async def test_demo_failure_returns_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A merchant with the wrong secret fails the probe step, which is reported."""
    monkeypatch.chdir(tmp_path)
    set_secret = SampleMerchant.set_secret

    def set_wrong_secret(merchant: SampleMerchant, _secret: str) -> None:
        set_secret(merchant, "not-the-secret-the-platform-signs-with")

    monkeypatch.setattr(SampleMerchant, "set_secret", set_wrong_secret)

    code = await demo.run_demo()
    output = capsys.readouterr().out

    assert code == 1
    assert "Demo failed in step 7 (The admin tests the products webhook)" in output
    assert "'http_status'" in output
    assert "Demo finished" not in output


def test_console_script_demo_exits_0(tmp_path: Path) -> None:
    """`vizochok demo` as a process exits 0 and writes nothing to its directory."""
    script = Path(sys.executable).parent / "vizochok"

    result = subprocess.run(
        [str(script), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo finished: every step succeeded." in result.stdout
    assert list(tmp_path.iterdir()) == []
