"""The catalogue of a daemon's metrics: every figure with both of its names.

    figures = catalogue(agent_metrics, agent_metrics.genai)
    print(markdown_table(figures))

The README's metric list is generated from this (``scripts/metrics_table.py``), and a test
checks that it matches, so the documented names cannot drift from the code. Each figure has one
name: the Prometheus name is the OpenTelemetry name with ``.`` as ``_``, plus ``_seconds`` for a
duration and ``_total`` for a counter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.telemetry.dual import DualCounter, DualGauge, DualHistogram

__all__ = ["Figure", "catalogue", "markdown_table", "prometheus_name_for"]


@dataclass(frozen=True)
class Figure:
    """One metric, as both exports name it."""

    otel_name: str
    prom_name: str
    """As scraped: with ``_total`` for counters."""
    kind: str
    unit: str
    labels: tuple[str, ...]
    attributes: tuple[str, ...]
    description: str


def prometheus_name_for(otel_name: str, *, kind: str, unit: str) -> str:
    """The Prometheus name a figure's OpenTelemetry name maps to (the one-name rule)."""
    name = otel_name.replace(".", "_")
    if unit == "s" and not name.endswith("_seconds"):
        name += "_seconds"
    return name + "_total" if kind == "counter" else name


def _of_dual(dual: DualCounter | DualHistogram | DualGauge) -> Figure:
    kind = type(dual).__name__.removeprefix("Dual").lower()
    prom = str(dual.prom_name)
    return Figure(
        otel_name=str(dual.otel_name),
        prom_name=prom + "_total" if kind == "counter" else prom,
        kind=kind,
        unit=str(dual.unit),
        labels=tuple(dual.label_names),
        attributes=tuple(dual.attribute_names),
        description=str(dual.description),
    )


def catalogue(*holders: object) -> list[Figure]:
    """Every figure held by ``holders`` (their dual instruments and watched gauges), by name."""
    found: dict[str, Figure] = {}
    for holder in holders:
        for value in vars(holder).values():
            if isinstance(value, DualCounter | DualHistogram | DualGauge):
                figure = _of_dual(value)
                found[figure.otel_name] = figure
        for figure in getattr(holder, "watched", ()):
            found.setdefault(figure.otel_name, figure)
    return sorted(found.values(), key=lambda f: f.otel_name)


def markdown_table(figures: Iterable[Figure], *, where: dict[str, str] | None = None) -> str:
    """A Markdown table of ``figures``; ``where`` maps an OTel name to the daemons exporting it."""
    rows = [
        "| OpenTelemetry | Prometheus | kind | unit | labels | daemons | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        labels = ", ".join(f.labels) or "—"
        daemons = (where or {}).get(f.otel_name, "")
        rows.append(
            f"| `{f.otel_name}` | `{f.prom_name}` | {f.kind} | {f.unit or '1'} | {labels} "
            f"| {daemons} | {f.description} |"
        )
    return "\n".join(rows)
