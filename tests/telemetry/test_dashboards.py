"""The shipped collector config and Grafana dashboard agree with what the daemons export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.telemetry.test_metric_names import _script

ROOT = Path(__file__).resolve().parents[2]
_SUFFIXES = ("_bucket", "_sum", "_count")


def _exported_names() -> set[str]:
    rows = [line.split("|")[2].strip(" `") for line in _script().table().splitlines()[2:]]
    return set(rows) | {f"{name}{suffix}" for name in rows for suffix in _SUFFIXES}


def test_every_dashboard_query_names_a_metric_that_exists() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/open-autoglm-fleet.json").read_text())
    exported = _exported_names()
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # Label names sit in by (...) and {...}; what is left names metrics.
            expr = re.sub(r"\b(?:by|ignoring|on)\s*\([^)]*\)|\{[^}]*\}", "", target["expr"])
            names = set(re.findall(r"\b((?:agl|gen_ai)_[a-z_]+)\b", expr))
            assert names, target
            queried |= names
    assert queried <= exported, sorted(queried - exported)
    # The panels the operators asked for are all there.
    for needed in (
        "agl_tokens_total",
        "agl_route_decisions_total",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_server_time_per_output_token_seconds_bucket",
        "agl_queue_depth",
        "agl_circuit_state",
        "agl_plugin_errors_total",
    ):
        assert needed in queried, needed


def test_the_collector_keeps_errors_slow_requests_and_fallbacks() -> None:
    config = yaml.safe_load((ROOT / "deploy/otel-collector.yaml").read_text())
    traces = config["service"]["pipelines"]["traces"]
    assert "tail_sampling" in traces["processors"]
    policies = {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert set(policies["string_attribute"]["string_attribute"]["values"]) == {
        "fallback",
        "local_error",
    }
    assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] == 10
    exporters = set(config["exporters"])
    assert not {e for e in exporters if e.split("/")[0] in ("otlp", "otlphttp", "debug")}
    for pipeline in config["service"]["pipelines"].values():
        assert set(pipeline["exporters"]) <= exporters
