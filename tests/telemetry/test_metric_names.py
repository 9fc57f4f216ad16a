"""One name per figure, documented from the code: the README's table is what the daemons export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shared.telemetry.catalog import prometheus_name_for

ROOT = Path(__file__).resolve().parents[2]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "metrics_table", ROOT / "scripts/metrics_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_lists_exactly_the_exported_metrics() -> None:
    script = _script()
    readme = (ROOT / "README.md").read_text()
    assert script.readme_with_table(readme) == readme, (
        "the README's metric table is stale; run: .venv/bin/python scripts/metrics_table.py --write"
    )


def test_every_figure_has_one_name_on_both_exports_and_both_daemons() -> None:
    rows = [line.split("|")[1:-1] for line in _script().table().splitlines()[2:]]
    assert len(rows) > 15
    for otel, prom, kind, unit, *_ in rows:
        otel, prom, kind, unit = otel.strip(" `"), prom.strip(" `"), kind.strip(), unit.strip()
        assert prom == prometheus_name_for(otel, kind=kind, unit=unit), (otel, prom)
    names = [r[0].strip(" `") for r in rows]
    assert len(names) == len(set(names))  # edge and hub share one row per figure
    assert "agl.queue.depth" in names and "gen_ai.client.operation.duration" in names
