"""`hubctl report`: the fleet report from the registry's heartbeats (pure parts; the whole
command runs against a simulated fleet in test_scenarios_run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_hub.cli import main as hubctl
from cloud_hub.cli.report import parse_since, snapshot_of
from cloud_hub.control.fleet import DeviceEntry
from shared.fleet_report.snapshot import snapshot_figures, write_snapshot_report
from shared.heartbeat import Heartbeat

NOW = 1_000_000.0


def _entry(device: str, *, age: float, requests: int, escalated: int) -> DeviceEntry:
    beat = Heartbeat(
        agent_version="0.1.0",
        interval_s=10,
        uptime_s=100,
        requests_by_reason={"default": requests - escalated, "policy": escalated},
        escalations_by_reason={"policy": escalated},
        tokens_by_tier={"edge": 100},
        http_requests=requests,
        http_errors=1,
        latency_buckets={"0.1": requests // 2, "1.0": requests, "+Inf": requests},
    )
    return DeviceEntry(device=device, last_seen=NOW - age, heartbeat=beat)


def test_since_accepts_a_number_and_a_unit() -> None:
    assert parse_since("24h") == 86400
    assert parse_since("30m") == 1800
    assert parse_since("1.5d") == 129600
    with pytest.raises(ValueError, match="give a number and a unit s, m, h or d"):
        parse_since("yesterday")


def test_the_window_keeps_devices_seen_within_it_and_figures_sum_them() -> None:
    entries = [
        _entry("a", age=5, requests=10, escalated=2),
        _entry("b", age=50, requests=30, escalated=3),  # stale: 5 beats missed
        _entry("old", age=90_000, requests=99, escalated=99),
    ]
    snap = snapshot_of(entries, now=NOW, since_s=86400)
    assert [(d.device, d.state) for d in snap.devices] == [("a", "online"), ("b", "stale")]
    figures = snapshot_figures(snap)
    assert figures["requests"] == 40
    assert figures["escalation_share"] == 5 / 40
    assert figures["error_share"] == 2 / 40
    assert figures["p50_latency_s"] == 0.1  # 20 of 40 answers ≤ 0.1 s (bucket upper bounds)
    assert figures["p99_latency_s"] == 1.0
    assert figures["tokens_edge"] == 200
    assert math.isnan(figures["tokens_cloud"])  # the hub counts those, not the heartbeats
    assert len(snapshot_of(entries, now=NOW, since_s=None).devices) == 3


def test_the_snapshot_report_is_self_contained(tmp_path: Path) -> None:
    snap = snapshot_of([_entry("a", age=5, requests=10, escalated=2)], now=NOW, since_s=3600)
    write_snapshot_report(snap, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "devices seen in the last 1 h" in md
    assert "**1 devices: 1 online**" in md
    assert "| escalation_share | 0.2 | – | – |" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert json.loads((tmp_path / "figures.json").read_text())["devices_online"] == 1


def test_bad_since_and_missing_baseline_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(hubctl, ["report", "--since", "3x"])
    assert bad.exit_code != 0
    assert "--since '3x': give a number and a unit s, m, h or d" in bad.output
    missing = runner.invoke(hubctl, ["report", "--baseline", str(tmp_path)])
    assert missing.exit_code != 0
    assert "no baseline figures at" in missing.output
