"""Health of a rollout wave (pure): window figures from heartbeat counters, and the verdict.

figs = group_figures(updated, now=counters, before=snapshot)
verdict = judge(figs, baseline, Bounds(window_s=60, max_error_rate=0.02, max_p95_ratio=1.5))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Bounds", "Counters", "Figures", "Verdict", "group_figures", "judge", "p95_from_buckets"]


class Counters(BaseModel):
    """A device's cumulative request figures from its heartbeat."""

    model_config = ConfigDict(frozen=True)

    requests: int = 0
    errors: int = 0
    latency_buckets: dict[str, int] = Field(default_factory=dict)
    """Cumulative counts of requests at or under each bound (``"0.5"`` s, ``"+Inf"``)."""


def p95_from_buckets(buckets: Mapping[str, int]) -> float | None:
    """The 95th percentile (the upper bound of its bucket) of cumulative bucket counts."""
    ordered = sorted(((float(le), n) for le, n in buckets.items()), key=lambda x: x[0])
    if not ordered or ordered[-1][1] <= 0:
        return None
    goal = 0.95 * ordered[-1][1]
    for bound, count in ordered:
        if count >= goal:
            return bound
    return ordered[-1][0]


@dataclass(frozen=True)
class Figures:
    """One group's figures over a window."""

    requests: int
    errors: int
    p95_s: float | None

    @property
    def error_rate(self) -> float:
        """Errors per request; 0.0 without requests."""
        return self.errors / self.requests if self.requests else 0.0


def group_figures(
    devices: Sequence[str], now: Mapping[str, Counters], before: Mapping[str, Counters]
) -> Figures:
    """Figures of ``devices`` since ``before`` (counters that went back, a restart, count from 0)."""
    requests = errors = 0
    buckets: dict[str, int] = {}
    for device in devices:
        cur, old = now.get(device), before.get(device, Counters())
        if cur is None:
            continue
        if cur.requests < old.requests:
            old = Counters()
        requests += cur.requests - old.requests
        errors += max(cur.errors - old.errors, 0)
        for le, n in cur.latency_buckets.items():
            buckets[le] = buckets.get(le, 0) + max(n - old.latency_buckets.get(le, 0), 0)
    return Figures(requests, errors, p95_from_buckets(buckets))


@dataclass(frozen=True)
class Bounds:
    """The health a wave must keep: window length, error-rate and p95-latency bounds."""

    window_s: float
    max_error_rate: float
    max_p95_ratio: float


@dataclass(frozen=True)
class Verdict:
    """Whether the updated devices stayed within bounds, and why not."""

    ok: bool
    reason: str


def judge(updated: Figures, baseline: Figures | None, bounds: Bounds) -> Verdict:
    """Compare the updated devices with the baseline (devices not updated yet, or None).

    The error-rate bound is on the updated devices' rate above the baseline's; the p95 bound is
    a ratio to the baseline's p95, checked when both groups have latencies.
    """
    base_rate = baseline.error_rate if baseline is not None else 0.0
    excess = updated.error_rate - base_rate
    if excess > bounds.max_error_rate:
        return Verdict(
            False,
            f"error rate {updated.error_rate:.3f} on {updated.requests} requests exceeds the "
            f"not-updated devices' {base_rate:.3f} by more than {bounds.max_error_rate}",
        )
    if baseline is not None and updated.p95_s is not None and baseline.p95_s:
        ratio = updated.p95_s / baseline.p95_s
        if ratio > bounds.max_p95_ratio:
            return Verdict(
                False,
                f"p95 latency {updated.p95_s:.3f}s is {ratio:.2f}x the not-updated devices' "
                f"{baseline.p95_s:.3f}s (bound {bounds.max_p95_ratio}x)",
            )
    return Verdict(
        True, f"within bounds: error rate {updated.error_rate:.3f}, {updated.requests} requests"
    )
