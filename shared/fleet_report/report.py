"""The fleet report: ``report.md`` and a self-contained ``report.html`` with PNG plots.

    figures = write_report(ReportInput(ledger=..., title="smoke", duration_s=10), out_dir,
                           baseline=load_baseline(Path("runs/last-week")))

It takes the simulator's ledger. ``hubctl report`` writes the same kind of report from a
``FleetSnapshot`` of the devices' heartbeats instead (``shared.fleet_report.snapshot``, which
reuses :func:`comparison_rows` and ``render``). ``out_dir`` also gets ``ledger.jsonl`` and
``figures.json``; a later run's ``--baseline DIR`` reads that ``figures.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import AglError
from shared.fleet_report.ledger import Ledger
from shared.fleet_report.metrics import BETTER, summarize
from shared.fleet_report.plots import device_heatmap, latency_cdf, timeline, tokens_by_tier
from shared.fleet_report.render import Page, html_page, markdown

__all__ = ["ReportError", "ReportInput", "comparison_rows", "load_baseline", "write_report"]


class ReportError(AglError):
    """A report cannot be written: a missing or broken baseline (the message says which)."""


_PLOTS = (
    ("latency_cdf.png", "Latency CDF per tier"),
    ("timeline.png", "Throughput and escalation share over time (red: faults)"),
    ("device_heatmap.png", "Escalation share per device"),
    ("tokens_by_tier.png", "Tokens by tier"),
)


@dataclass
class ReportInput:
    """What a report is made of: a ledger, its time span, and what the checks found."""

    ledger: Ledger
    title: str
    duration_s: float
    description: str = ""
    violations: Sequence[object] = field(default_factory=list)
    """Broken promises (their ``str()`` is the explanation; the simulator's ``Violation``)."""
    links: list[tuple[str, str]] = field(default_factory=list)
    """(text, relative path) of related reports, listed under "See also"."""
    extra: dict[str, float] = field(default_factory=dict)
    """Figures measured outside the ledger (RSS per device …)."""


def load_baseline(directory: Path) -> dict[str, float]:
    """The figures of an earlier report (its ``figures.json``)."""
    path = directory / "figures.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ReportError(
            f"no baseline figures at {path}; pass --baseline a directory an earlier "
            "`open-autoglm sim --report DIR` or `hubctl report --out DIR` wrote"
        ) from None
    except ValueError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from None
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def comparison_rows(
    current: dict[str, float], baseline: dict[str, float] | None
) -> list[tuple[str, str, str, str]]:
    """(metric, current, baseline, status) rows; status is ↑/↓ (better/worse), = or –."""
    rows = []
    for name, better in BETTER.items():
        if name not in current:
            continue
        now = current[name]
        before = None if baseline is None else baseline.get(name)
        status = "–"
        if before is not None and not (math.isnan(now) or math.isnan(before)):
            if math.isclose(now, before, rel_tol=0.02, abs_tol=1e-9):
                status = "="
            elif better == 0:
                status = "↑" if now > before else "↓"
                status += " (neutral)"
            else:
                improved = (now > before) == (better > 0)
                status = "↑ better" if improved else "↓ worse"
        rows.append((name, _fmt(now), _fmt(before), status))
    return rows


def write_report(
    source: ReportInput, out_dir: Path, *, baseline: dict[str, float] | None = None
) -> dict[str, float]:
    """Write the report files into ``out_dir``; returns the run's figures.

    ``baseline``: an earlier report's figures (:func:`load_baseline`) for the comparison table.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {**summarize(source.ledger, duration_s=source.duration_s), **source.extra}
    ledger = source.ledger
    latency_cdf(ledger, out_dir / "latency_cdf.png")
    timeline(ledger, out_dir / "timeline.png", duration_s=source.duration_s)
    device_heatmap(ledger, out_dir / "device_heatmap.png", duration_s=source.duration_s)
    tokens_by_tier(ledger, out_dir / "tokens_by_tier.png")
    ledger.write_jsonl(out_dir / "ledger.jsonl")
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    rows = comparison_rows(figures, baseline)
    page = _page(source, rows)
    (out_dir / "report.md").write_text(markdown(page), encoding="utf-8")
    (out_dir / "report.html").write_text(html_page(page, out_dir), encoding="utf-8")
    return figures


def _verdict(source: ReportInput) -> str:
    if not source.violations:
        return "PASS: every invariant held."
    return f"FAIL: {len(source.violations)} invariant(s) broke."


def _fault_lines(ledger: Ledger) -> list[str]:
    return [
        f"{m.kind} at {m.at_s:.1f} s"
        + (f" until {m.until_s:.1f} s" if m.until_s > m.at_s else "")
        + (f": {m.detail}" if m.detail else "")
        for m in ledger.faults
    ]


def _page(source: ReportInput, rows: list[tuple[str, str, str, str]]) -> Page:
    return Page(
        title=source.title,
        description=source.description,
        verdict=_verdict(source),
        passed=not source.violations,
        problems=[str(v) for v in source.violations],
        sections=[("Faults", _fault_lines(source.ledger))]
        + (
            [("See also", [f"{text}: {path}" for text, path in source.links])]
            if source.links
            else []
        ),
        rows=rows,
        plots=list(_PLOTS),
    )
