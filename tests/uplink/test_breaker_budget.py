"""Unit tests of the pure circuit breaker and token budget."""

from __future__ import annotations

import datetime as dt

from edge_agent.uplink import CircuitBreaker, TokenBudget


class FakeClock:
    """Stands in for time.monotonic."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow() and not breaker.would_allow()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now = 5.0
    assert breaker.state == "half_open" and breaker.would_allow()
    assert breaker.allow()
    assert not breaker.allow() and not breaker.would_allow()


def test_probe_success_closes_and_probe_failure_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now = 5.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"


def test_released_probe_lets_another_probe_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.allow()


def test_budget_none_is_unlimited() -> None:
    budget = TokenBudget(None)
    budget.charge(10**9)
    assert budget.has_room() and budget.remaining() is None


def test_budget_runs_out_and_resets_the_next_day() -> None:
    day = [dt.date(2025, 1, 1)]
    budget = TokenBudget(100, today=lambda: day[0])
    budget.charge(60)
    assert budget.remaining() == 40 and budget.has_room()
    budget.charge(60)
    assert budget.remaining() == 0 and not budget.has_room()
    day[0] = dt.date(2025, 1, 2)
    assert budget.remaining() == 100 and budget.spent == 0
