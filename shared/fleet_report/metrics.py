"""Fleet figures from a ledger (pure): the numbers the report tables and the benchmark print.

figures = summarize(ledger, duration_s=30)
figures["p99_latency_cloud_s"], figures["escalation_share"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shared.fleet_report.ledger import Ledger, LedgerEntry

__all__ = ["BETTER", "percentile", "summarize"]

#: Which way is better for each figure the comparison table shows (+1 higher, -1 lower).
BETTER: dict[str, int] = {
    "requests": 0,
    "answered_share": +1,
    "ok_share": +1,
    "throughput_rps": +1,
    "hub_rps": 0,
    "escalation_share": 0,
    "fallback_share": -1,
    "error_share": -1,
    "p50_latency_edge_s": -1,
    "p99_latency_edge_s": -1,
    "p50_latency_cloud_s": -1,
    "p99_latency_cloud_s": -1,
    "p50_ttft_s": -1,
    "tokens_edge": 0,
    "tokens_cloud": 0,
    "breaker_opens": -1,
    "rss_per_device_mb": -1,
    "sim_loop_lag_p99_ms": -1,
    "registry_devices_online": +1,
    "registry_requests": 0,
    # hubctl report (from heartbeats)
    "devices": 0,
    "devices_online": +1,
    "devices_offline": -1,
    "breakers_open": -1,
    "p50_latency_s": -1,
    "p99_latency_s": -1,
}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _latencies(entries: list[LedgerEntry], tier: str) -> list[float]:
    return [
        e.latency_s
        for e in entries
        if e.tier == tier and e.status == 200 and e.latency_s is not None
    ]


def summarize(ledger: Ledger, *, duration_s: float) -> dict[str, float]:
    """The figures of one run (see :data:`BETTER` for the names)."""
    entries = list(ledger)
    n = len(entries)
    answered = [e for e in entries if e.answered_at is not None]
    ok = [e for e in entries if e.ok]
    cloud = [e for e in ok if e.tier == "cloud"]
    ttfts = [e.ttft_s for e in ok if e.stream and e.ttft_s is not None]
    share = (lambda k: k / n) if n else (lambda k: math.nan)
    return {
        "requests": float(n),
        "answered_share": share(len(answered)),
        "ok_share": share(len(ok)),
        "throughput_rps": len(ok) / duration_s,
        "hub_rps": len(cloud) / duration_s,
        "escalation_share": share(len(cloud)),
        "fallback_share": share(sum(e.reason == "fallback" for e in entries)),
        "error_share": share(sum(e.status is not None and e.status != 200 for e in entries)),
        "p50_latency_edge_s": percentile(_latencies(entries, "edge"), 50),
        "p99_latency_edge_s": percentile(_latencies(entries, "edge"), 99),
        "p50_latency_cloud_s": percentile(_latencies(entries, "cloud"), 50),
        "p99_latency_cloud_s": percentile(_latencies(entries, "cloud"), 99),
        "p50_ttft_s": percentile(ttfts, 50),
        "tokens_edge": float(
            sum(e.prompt_tokens + e.completion_tokens for e in ok if e.tier == "edge")
        ),
        "tokens_cloud": float(sum(e.prompt_tokens + e.completion_tokens for e in cloud)),
        "breaker_opens": float(sum(after == "open" for *_, after in ledger.breaker_events)),
    }
