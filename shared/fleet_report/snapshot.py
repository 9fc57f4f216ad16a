"""The fleet report for a real fleet, from each device's latest heartbeat (``hubctl report``).

    snap = FleetSnapshot(devices=[DeviceFigures(device="dev-1", state="online", …)], since_s=86400)
    figures = write_snapshot_report(snap, Path("out"), baseline=None)

A heartbeat carries counters since its agent started (requests and escalations by router reason,
tokens by tier, a cumulative latency histogram), so the figures are per device since its start,
summed over the devices seen within ``since_s``; the report says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from shared.fleet_report.render import Page, html_page, markdown
from shared.fleet_report.report import comparison_rows

__all__ = ["DeviceFigures", "FleetSnapshot", "snapshot_figures", "write_snapshot_report"]

_PLOTS = (
    ("latency_cdf.png", "HTTP latency CDF (all devices, from their histograms)"),
    ("escalation_by_device.png", "Escalation share per device"),
    ("tokens_by_tier.png", "Tokens by tier"),
)


@dataclass
class DeviceFigures:
    """One device's latest heartbeat, as the report needs it."""

    device: str
    state: str
    """online, stale, offline or never_seen."""
    last_seen_age_s: float | None = None
    requests_by_reason: dict[str, int] = field(default_factory=dict)
    escalations_by_reason: dict[str, int] = field(default_factory=dict)
    tokens_by_tier: dict[str, int] = field(default_factory=dict)
    latency_buckets: dict[str, int] = field(default_factory=dict)
    """Cumulative: upper bound in s (``"+Inf"`` last) → answers at most that slow."""
    http_requests: int = 0
    http_errors: int = 0
    breaker: str = "closed"


@dataclass
class FleetSnapshot:
    """Devices seen within ``since_s`` (all devices in the registry when None)."""

    devices: list[DeviceFigures]
    since_s: float | None = None
    title: str = "fleet"


def _buckets(devices: list[DeviceFigures]) -> list[tuple[float, int]]:
    total: dict[float, int] = {}
    for d in devices:
        for bound, count in d.latency_buckets.items():
            key = float(bound)  # "+Inf" parses to math.inf
            total[key] = total.get(key, 0) + count
    return sorted(total.items())


def _quantile(buckets: list[tuple[float, int]], q: float) -> float:
    """The upper bound of the bucket holding the ``q`` quantile (Prometheus-style, coarse)."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    want = q * buckets[-1][1]
    return next(bound for bound, count in buckets if count >= want)


def snapshot_figures(snap: FleetSnapshot) -> dict[str, float]:
    """The comparable figures of a snapshot (names shared with the simulator's where they match)."""
    devs = snap.devices
    requests = sum(sum(d.requests_by_reason.values()) for d in devs)
    escalated = sum(sum(d.escalations_by_reason.values()) for d in devs)
    fallback = sum(d.requests_by_reason.get("fallback", 0) for d in devs)
    http = sum(d.http_requests for d in devs)
    buckets = _buckets(devs)
    share = (lambda n: n / requests) if requests else (lambda n: math.nan)
    return {
        "devices": float(len(devs)),
        "devices_online": float(sum(d.state == "online" for d in devs)),
        "devices_offline": float(sum(d.state in ("offline", "never_seen") for d in devs)),
        "breakers_open": float(sum(d.breaker != "closed" for d in devs)),
        "requests": float(requests),
        "escalation_share": share(escalated),
        "fallback_share": share(fallback),
        "error_share": sum(d.http_errors for d in devs) / http if http else math.nan,
        "p50_latency_s": _quantile(buckets, 0.5),
        "p99_latency_s": _quantile(buckets, 0.99),
        "tokens_edge": float(sum(d.tokens_by_tier.get("edge", 0) for d in devs)),
        # Devices count the tokens they generate; the hub counts the cloud's (each token once
        # fleet-wide), so heartbeats may carry no cloud tokens: NaN says "not known here".
        "tokens_cloud": float(cloud)
        if (cloud := sum(d.tokens_by_tier.get("cloud", 0) for d in devs))
        else math.nan,
    }


def write_snapshot_report(
    snap: FleetSnapshot, out_dir: Path, *, baseline: dict[str, float] | None = None
) -> dict[str, float]:
    """report.md, report.html, the PNG plots and figures.json for a fleet snapshot."""
    from shared.fleet_report.snapshot_plots import escalation_by_device, histogram_cdf, tier_tokens

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = snapshot_figures(snap)
    histogram_cdf(_buckets(snap.devices), out_dir / "latency_cdf.png")
    escalation_by_device(
        {
            d.device: sum(d.escalations_by_reason.values()) / sum(d.requests_by_reason.values())
            for d in snap.devices
            if sum(d.requests_by_reason.values())
        },
        out_dir / "escalation_by_device.png",
    )
    tier_tokens(figures["tokens_edge"], figures["tokens_cloud"], out_dir / "tokens_by_tier.png")
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    window = (
        "all devices in the registry"
        if snap.since_s is None
        else (f"devices seen in the last {snap.since_s / 3600:g} h")
    )
    states: dict[str, int] = {}
    for d in snap.devices:
        states[d.state] = states.get(d.state, 0) + 1
    page = Page(
        title=snap.title,
        description=f"From each device's latest heartbeat: {window}; counters run since each "
        "agent started.",
        verdict=f"{len(snap.devices)} devices: "
        + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(states.items())),
        passed=not figures["devices_offline"],
        sections=[
            (
                "Open breakers",
                [f"{d.device}: {d.breaker}" for d in snap.devices if d.breaker != "closed"],
            )
        ],
        rows=comparison_rows(figures, baseline),
        plots=list(_PLOTS),
    )
    (out_dir / "report.md").write_text(markdown(page), encoding="utf-8")
    (out_dir / "report.html").write_text(html_page(page, out_dir), encoding="utf-8")
    return figures
