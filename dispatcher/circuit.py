"""Circuit breakers, one per tenant webhook, kept in memory on each instance.

A merchant that keeps failing costs every caller its full timeout (twice, with
the retry). After `failure_threshold` failed calls within `window_seconds`, the
circuit opens and calls fail at once without contacting the merchant. After
`cooldown_seconds` one call is let through as a probe: success closes the
circuit, failure opens it for another cool-down.

    state       call arrives                    call ends
    closed      sent                            failure → count; threshold → open
    open        rejected until cool-down ends,  -
                then sent as the probe → half_open
    half_open   rejected (the probe is out)     success → closed; failure → open
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

log = structlog.get_logger("dispatcher.circuit")

CircuitState = Literal["closed", "open", "half_open"]
CircuitKey = tuple[str, str]  # (tenant id, webhook kind)


@dataclass(frozen=True)
class CircuitSettings:
    failure_threshold: int = 5
    window_seconds: float = 30.0
    cooldown_seconds: float = 30.0


@dataclass
class _Circuit:
    state: CircuitState = "closed"
    failures: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0


class CircuitBreakers:
    def __init__(
        self,
        settings: CircuitSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._circuits: dict[CircuitKey, _Circuit] = {}

    def allow(self, key: CircuitKey) -> bool:
        """Return whether a call may go out now; may start a half-open probe."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state == "closed":
            return True
        if circuit.state == "half_open":
            return False
        if self._clock() - circuit.opened_at < self._settings.cooldown_seconds:
            return False
        self._change(key, circuit, "half_open")
        return True

    def record_success(self, key: CircuitKey) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            return
        if circuit.state != "closed":
            self._change(key, circuit, "closed")
        # A closed circuit with no recent failures holds no state worth keeping.
        del self._circuits[key]

    def record_failure(self, key: CircuitKey) -> None:
        now = self._clock()
        circuit = self._circuits.setdefault(key, _Circuit())
        if circuit.state == "half_open":
            circuit.opened_at = now
            self._change(key, circuit, "open")
            return
        if circuit.state == "open":
            return

        circuit.failures.append(now)
        while (
            circuit.failures
            and now - circuit.failures[0] > self._settings.window_seconds
        ):
            circuit.failures.popleft()
        if len(circuit.failures) >= self._settings.failure_threshold:
            circuit.opened_at = now
            circuit.failures.clear()
            self._change(key, circuit, "open")

    def release_probe(self, key: CircuitKey) -> None:
        """Reopen a half-open circuit whose probe ended without a verdict.

        The next call after this becomes the new probe, with no further wait.
        """
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.state == "half_open":
            circuit.opened_at = self._clock() - self._settings.cooldown_seconds
            circuit.state = "open"

    def reset(self, key: CircuitKey) -> None:
        """Close the circuit, for example after a successful admin probe."""
        self.record_success(key)

    def state(self, key: CircuitKey) -> CircuitState:
        circuit = self._circuits.get(key)
        return "closed" if circuit is None else circuit.state

    def _change(self, key: CircuitKey, circuit: _Circuit, state: CircuitState) -> None:
        previous, circuit.state = circuit.state, state
        tenant_id, webhook = key
        event = {
            "open": "circuit.opened",
            "half_open": "circuit.half_opened",
            "closed": "circuit.closed",
        }[state]
        log.warning(event, tenant_id=tenant_id, webhook=webhook, previous=previous)
