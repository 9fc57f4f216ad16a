"""Whole runs: real nats-servers, leaf nodes and `hubctl serve` workers, devices running the real
edge code with the SIMULATED model. The smoke scenario through the console script, and the hub
outage (every worker killed, one added back) in-process so the ledger can be read closely.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openautoglm.sim.runner import run_scenario
from openautoglm.sim.scenario import load_scenario

pytestmark = pytest.mark.timeout(180)


def test_open_autoglm_sim_smoke_writes_a_passing_report(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "open-autoglm"
    out = tmp_path / "report"
    done = subprocess.run(
        [str(script), "sim", "smoke", "--duration-s", "5", "--report", str(out)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all invariants held" in done.stdout
    assert f"report: {out / 'report.html'}" in done.stdout
    rows = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    requests = [r for r in rows if "id" in r]
    assert len(requests) > 50
    # Every request answered once with its tier's exact text; long prompts went to the hub.
    assert all(r["status"] == 200 and r["answers"] == 1 and r["text_ok"] for r in requests)
    assert {(r["intended_tier"], r["tier"], r["reason"]) for r in requests} == {
        ("cloud", "cloud", "policy"),
        ("edge", "edge", "default"),
    }
    assert {r["stream"] for r in requests} == {True, False}
    figures = json.loads((out / "figures.json").read_text())
    assert figures["ok_share"] == 1.0
    assert 0 < figures["rss_per_device_mb"] < 5
    assert figures["registry_devices_online"] == 10  # every device's heartbeat reached the hub
    html = (out / "report.html").read_text()
    assert "PASS: every invariant held." in html
    assert html.count("data:image/png;base64,") == 4
    # hubctl report on the same fleet: the hub's registry sees every device and its requests.
    hub = json.loads((out / "hub" / "figures.json").read_text())
    assert hub["devices_online"] == 10
    assert 0 < hub["requests"] <= len(requests)
    assert (out / "hub" / "report.html").read_text().count("data:image/png;base64,") == 3


async def test_hub_outage_falls_back_opens_breakers_and_recovers() -> None:
    scenario = load_scenario("hub_outage")
    result = await run_scenario(scenario)
    assert result.violations == [], "\n".join(str(v) for v in result.violations)
    ledger = result.ledger
    kill, add = ledger.faults
    assert (kill.kind, add.kind) == ("kill_worker", "add_worker")
    assert kill.detail == "killed worker(s) [0, 1]; 0 left"
    during = [
        e for e in ledger if e.intended_tier == "cloud" and kill.at_s + 1 <= e.sent_at <= add.at_s
    ]
    assert during and all((e.tier, e.reason) == ("edge", "fallback") for e in during)
    assert all(e.status == 200 and e.text_ok for e in during)  # served locally, complete
    before = [e for e in ledger if e.intended_tier == "cloud" and e.sent_at < kill.at_s - 0.5]
    assert before and all(e.tier == "cloud" for e in before)
    assert add.until_s > add.at_s  # the mark ends when the new worker serves
    # Once it serves, breakers reach half-open within their 2 s cooldown and the probe closes them.
    after = [e for e in ledger if e.intended_tier == "cloud" and e.sent_at > add.until_s + 4]
    assert after and all(e.tier == "cloud" for e in after)
    opened = {d for _, d, _, state in ledger.breaker_events if state == "open"}
    closed = {d for _, d, _, state in ledger.breaker_events if state == "closed"}
    assert opened and closed
    assert all(kill.at_s <= t for t, *_ in ledger.breaker_events)
    # The devices' heartbeats reached the hub registry (hubctl stats) despite the outage.
    assert result.registry["devices"]["total"] == scenario.device_count
    assert result.registry["devices"]["online"] == scenario.device_count
