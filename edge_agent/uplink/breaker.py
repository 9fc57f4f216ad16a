"""A circuit breaker for the uplink (pure; the clock is injectable).

closed ──N consecutive failures──▶ open ──cooldown──▶ half-open ──probe ok──▶ closed
                                    ▲                      │
                                    └──── probe failed ────┘

    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=30)
    if breaker.allow():
        ...; breaker.record_success()  # or record_failure()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Stops calls to a failing dependency and lets one probe through after a cooldown."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        """The current state; ``open`` turns into ``half_open`` once the cooldown passed."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def would_allow(self) -> bool:
        """Whether :meth:`allow` would let a call through now (does not take the probe)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probe_out)

    def allow(self) -> bool:
        """Ask to make a call. In half-open state only the first caller (the probe) gets True."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def record_success(self) -> None:
        """A call succeeded: close the circuit and forget earlier failures."""
        self._failures = 0
        self._opened_at = None
        self._probe_out = False

    def record_failure(self) -> None:
        """A call failed: count it; open (or re-open) the circuit at the threshold."""
        self._failures += 1
        if self._probe_out or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probe_out = False

    def release_probe(self) -> None:
        """The probe ended without a verdict (the caller gave up): let another probe through."""
        self._probe_out = False
