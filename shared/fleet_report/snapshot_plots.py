"""Plots of a fleet snapshot (``hubctl report``): matplotlib, Agg, one PNG each."""

from __future__ import annotations

import math
from pathlib import Path

from shared.fleet_report.plots import TIER_COLORS, pyplot

__all__ = ["escalation_by_device", "histogram_cdf", "tier_tokens"]

_DPI = 110
#: Devices shown by name in the escalation chart (the highest shares); the rest are summarised.
_MAX_BARS = 40


def histogram_cdf(buckets: list[tuple[float, int]], path: Path) -> None:
    """The fleet's latency CDF from cumulative histogram buckets (steps at the bucket bounds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    total = buckets[-1][1] if buckets else 0
    finite = [(b, c) for b, c in buckets if not math.isinf(b)]
    # Stop one bucket after every answer is counted: empty tail buckets only stretch the axis.
    full = next((i for i, (_, c) in enumerate(finite) if c >= total), len(finite) - 1)
    finite = finite[: full + 2]
    if finite and total:
        ax.step(
            [b * 1000 for b, _ in finite],
            [c / total for _, c in finite],
            where="post",
            color=TIER_COLORS["edge"],
            label=f"all answers (n={total:,})",
        )
        ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("latency (ms, log scale; bucket upper bounds)")
    ax.set_ylabel("share of answers")
    ax.set_ylim(0, 1.02)
    ax.set_title("HTTP latency CDF across the fleet")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def escalation_by_device(shares: dict[str, float], path: Path) -> None:
    """A bar per device (the highest shares first), with the fleet mean as a line."""
    plt = pyplot()
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    shown = ranked[:_MAX_BARS]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.22 * max(1, len(shown))))
    ax.barh([d for d, _ in shown][::-1], [s for _, s in shown][::-1], color=TIER_COLORS["cloud"])
    if shares:
        mean = sum(shares.values()) / len(shares)
        ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"fleet mean {mean:.0%}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the device's requests answered by the cloud")
    more = f" (top {_MAX_BARS} of {len(ranked)})" if len(ranked) > _MAX_BARS else ""
    ax.set_title(f"Escalation share per device{more}")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def tier_tokens(edge: float, cloud: float, path: Path) -> None:
    """Tokens answered per tier, with the cloud's share (NaN cloud: not in the heartbeats)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.6))
    unknown = math.isnan(cloud)
    cloud = 0.0 if unknown else cloud
    ax.barh(["edge", "cloud"], [edge, cloud], color=[TIER_COLORS["edge"], TIER_COLORS["cloud"]])
    total = edge + cloud or 1
    for i, n in enumerate((edge, cloud)):
        label = "  not in heartbeats" if unknown and i == 1 else f"  {n:,.0f} ({n / total:.0%})"
        ax.text(n, i, label, va="center", fontsize=9)
    ax.set_xlim(0, max(edge, cloud, 1) * 1.35)
    ax.set_xlabel("tokens (prompt + completion)")
    ax.set_title(
        "Edge tokens (cloud tokens are counted by the hub, not in heartbeats)"
        if unknown
        else "Tokens by tier: the cloud share is the bill"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
