"""A whole run: real nats-servers, leaf nodes and `hubctl serve` workers, devices running the real
edge code with the SIMULATED model. The smoke scenario through the console script (the hub
outage is in ``test_hub_outage_run.py``, a file of its own so the two runs share no worker).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    # The simulator's servers take only its own user, so the hub's whole registry is this fleet:
    # no stray agent of another test (reconnecting to a reused port) can beat there.
    assert hub["devices_online"] == 10
    assert 0 < hub["requests"] <= len(requests)
    assert (out / "hub" / "report.html").read_text().count("data:image/png;base64,") == 3
