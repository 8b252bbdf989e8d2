"""Circuit breaker state changes, driven by a fake clock."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from dispatcher.circuit import CircuitBreakers, CircuitSettings

KEY = ("tenant-1", "products")


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def breakers(clock: list[float]) -> CircuitBreakers:
    settings = CircuitSettings(
        failure_threshold=3, window_seconds=10, cooldown_seconds=5
    )
    return CircuitBreakers(settings, clock=lambda: clock[0])


def test_opens_after_threshold(breakers):
    """Three failures within the window open the circuit."""
    for _ in range(3):
        breakers.record_failure(KEY)
    assert breakers.state(KEY) == "open"
    assert not breakers.allow(KEY)


def test_failures_outside_window_do_not_count(breakers, clock):
    """Failures older than the window are forgotten."""
    breakers.record_failure(KEY)
    breakers.record_failure(KEY)
    clock[0] += 11
    breakers.record_failure(KEY)
    assert breakers.state(KEY) == "closed"


def test_success_resets_failure_count(breakers):
    """A success in between starts the count again."""
    breakers.record_failure(KEY)
    breakers.record_failure(KEY)
    breakers.record_success(KEY)
    breakers.record_failure(KEY)
    assert breakers.state(KEY) == "closed"


def test_one_probe_after_cooldown(breakers, clock):
    """After the cool-down exactly one call is let through."""
    for _ in range(3):
        breakers.record_failure(KEY)
    clock[0] += 5
    assert breakers.allow(KEY)
    assert breakers.state(KEY) == "half_open"
    assert not breakers.allow(KEY)


def test_probe_success_closes(breakers, clock):
    """A successful probe closes the circuit."""
    for _ in range(3):
        breakers.record_failure(KEY)
    clock[0] += 5
    breakers.allow(KEY)
    breakers.record_success(KEY)
    assert breakers.state(KEY) == "closed"
    assert breakers.allow(KEY)


def test_probe_failure_reopens(breakers, clock):
    """A failed probe opens the circuit for another cool-down."""
    for _ in range(3):
        breakers.record_failure(KEY)
    clock[0] += 5
    breakers.allow(KEY)
    breakers.record_failure(KEY)
    assert breakers.state(KEY) == "open"
    clock[0] += 4
    assert not breakers.allow(KEY)


def test_abandoned_probe_lets_next_call_probe(breakers, clock):
    """A cancelled probe does not leave the circuit half-open for ever."""
    for _ in range(3):
        breakers.record_failure(KEY)
    clock[0] += 5
    breakers.allow(KEY)
    breakers.release_probe(KEY)
    assert breakers.state(KEY) == "open"
    assert breakers.allow(KEY)


def test_circuits_are_per_tenant_webhook(breakers):
    """One webhook's failures leave other webhooks and tenants closed."""
    for _ in range(3):
        breakers.record_failure(KEY)
    assert breakers.state(("tenant-1", "cart")) == "closed"
    assert breakers.state(("tenant-2", "products")) == "closed"


def test_state_changes_are_logged(breakers, clock):
    """Opening, half-opening and closing each log one event."""
    with capture_logs() as events:
        for _ in range(3):
            breakers.record_failure(KEY)
        clock[0] += 5
        breakers.allow(KEY)
        breakers.record_success(KEY)
    names = [event["event"] for event in events]
    assert names == ["circuit.opened", "circuit.half_opened", "circuit.closed"]
    assert events[0]["tenant_id"] == "tenant-1"
    assert events[0]["webhook"] == "products"
