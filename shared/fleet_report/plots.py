"""The report's pictures (matplotlib, Agg): each function writes one PNG from a ledger.

latency_cdf(ledger, path); timeline(ledger, path, duration_s=30)
device_heatmap(ledger, path, duration_s=30); tokens_by_tier(ledger, path)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from shared.fleet_report.ledger import Ledger

__all__ = [
    "TIER_COLORS",
    "device_heatmap",
    "latency_cdf",
    "pyplot",
    "timeline",
    "tokens_by_tier",
]

TIER_COLORS = {"edge": "#2b8cbe", "cloud": "#e6550d", "fallback": "#756bb1", "error": "#d62728"}
_DPI = 110


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg back-end, with the report's style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def latency_cdf(ledger: Ledger, path: Path) -> None:
    """Latency CDF per answering tier, JSON (solid) and streamed (dashed, paced), log time axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for tier in ("edge", "cloud"):
        for stream, style in ((False, "-"), (True, "--")):
            values = sorted(
                e.latency_s * 1000
                for e in ledger
                if e.ok and e.tier == tier and e.stream is stream and e.latency_s is not None
            )
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            p99 = values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]
            kind = "stream" if stream else "json"
            ax.step(
                values,
                ys,
                where="post",
                color=TIER_COLORS[tier],
                linestyle=style,
                label=f"{tier}, {kind} (n={len(values)}, p99 {p99:.0f} ms)",
            )
    ax.set_xscale("log")
    ax.set_xlabel("latency, sent → last byte (ms, log scale)")
    ax.set_ylabel("share of requests answered")
    ax.set_ylim(0, 1.02)
    ax.set_title("Latency CDF per tier (streams are paced by stream_interval_ms)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def _bins(duration_s: float) -> float:
    return max(1.0, duration_s / 40)


def _fault_marks(ax: Any, ledger: Ledger) -> None:
    top = ax.get_ylim()[1]
    for mark in ledger.faults:
        if mark.until_s > mark.at_s:
            ax.axvspan(mark.at_s, mark.until_s, color="#d62728", alpha=0.12)
        ax.axvline(mark.at_s, color="#d62728", linewidth=1)
        ax.text(
            mark.at_s,
            top,
            f" {mark.kind}",
            color="#d62728",
            fontsize=8,
            va="top",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )


def timeline(ledger: Ledger, path: Path, *, duration_s: float) -> None:
    """Answers/s by tier (stacked) and the escalation and fallback shares, with fault markers."""
    plt = pyplot()
    width = _bins(duration_s)
    n = max(1, math.ceil(duration_s / width))
    counts = {k: [0] * n for k in ("edge", "cloud", "fallback", "error")}
    sent = [0] * n
    for e in ledger:
        i = min(n - 1, int(e.sent_at / width))
        sent[i] += 1
        if (e.status is not None and e.status != 200) or e.answered_at is None:
            counts["error"][i] += 1
        elif e.reason == "fallback":
            counts["fallback"][i] += 1
        elif e.tier in counts:
            counts[e.tier or "edge"][i] += 1
    xs = [i * width + width / 2 for i in range(n)]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    bottom_stack = [0.0] * n
    for key, label in (
        ("edge", "edge"),
        ("cloud", "cloud"),
        ("fallback", "edge (fallback)"),
        ("error", "error / unanswered"),
    ):
        rates = [c / width for c in counts[key]]
        top.bar(
            xs, rates, width=width * 0.95, bottom=bottom_stack, color=TIER_COLORS[key], label=label
        )
        bottom_stack = [b + r for b, r in zip(bottom_stack, rates, strict=True)]
    top.set_ylabel("answers / s (by send time)")
    top.set_title("Throughput and escalation over time")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    top.set_ylim(0, max([*bottom_stack, 1.0]) * 1.25)
    _fault_marks(top, ledger)
    esc = [counts["cloud"][i] / sent[i] if sent[i] else math.nan for i in range(n)]
    fb = [counts["fallback"][i] / sent[i] if sent[i] else math.nan for i in range(n)]
    bottom.plot(xs, esc, color=TIER_COLORS["cloud"], marker=".", label="escalated (cloud)")
    bottom.plot(xs, fb, color=TIER_COLORS["fallback"], marker=".", label="fallback")
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("share of requests")
    bottom.set_xlabel("seconds since traffic started")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    _fault_marks(bottom, ledger)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def device_heatmap(ledger: Ledger, path: Path, *, duration_s: float) -> None:
    """Escalation share per device (rows) and time bin (columns); grey = no request."""
    plt = pyplot()
    import numpy as np

    devices = sorted({e.device for e in ledger})
    cols = max(1, min(30, math.ceil(duration_s / 1.0)))
    width = duration_s / cols
    total = np.zeros((len(devices), cols))
    cloud = np.zeros((len(devices), cols))
    row = {d: i for i, d in enumerate(devices)}
    for e in ledger:
        j = min(cols - 1, int(e.sent_at / width))
        total[row[e.device], j] += 1
        if e.ok and e.tier == "cloud":
            cloud[row[e.device], j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, cloud / total, np.nan)
    height = min(12.0, 2.0 + 0.06 * len(devices))
    fig, ax = plt.subplots(figsize=(9, height))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    image = ax.imshow(
        share,
        aspect="auto",
        cmap=cmap,
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(0, duration_s, len(devices), 0),
    )
    step = max(1, len(devices) // 25)
    ax.set_yticks([i + 0.5 for i in range(0, len(devices), step)])
    ax.set_yticklabels(devices[::step], fontsize=7)
    ax.grid(False)
    for mark in ledger.faults:
        ax.axvline(mark.at_s, color="#d62728", linewidth=1)
        if mark.until_s > mark.at_s:
            ax.axvline(mark.until_s, color="#d62728", linewidth=1, linestyle="--")
    ax.set_xlabel("seconds since traffic started (red: fault starts, dashed: healed)")
    ax.set_title("Escalation share per device over time")
    fig.colorbar(image, ax=ax, label="share answered by the cloud", fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def tokens_by_tier(ledger: Ledger, path: Path) -> None:
    """Prompt and completion tokens answered per tier (where the tokens' cost lands)."""
    plt = pyplot()
    tiers = ["edge", "cloud"]
    prompt = [sum(e.prompt_tokens for e in ledger if e.ok and e.tier == t) for t in tiers]
    completion = [sum(e.completion_tokens for e in ledger if e.ok and e.tier == t) for t in tiers]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(tiers, prompt, color=["#9ecae1", "#fdae6b"], label="prompt tokens")
    ax.barh(
        tiers,
        completion,
        left=prompt,
        color=[TIER_COLORS["edge"], TIER_COLORS["cloud"]],
        label="completion tokens",
    )
    total = sum(prompt) + sum(completion) or 1
    for i, _t in enumerate(tiers):
        n = prompt[i] + completion[i]
        ax.text(n, i, f"  {n:,} ({n / total:.0%})", va="center", fontsize=9)
    ax.set_xlim(0, max(prompt[i] + completion[i] for i in range(2)) * 1.35 + 1)
    ax.set_xlabel("tokens (prompt, light; completion, dark)")
    ax.set_title("Tokens by tier: the cloud share is the bill")
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
