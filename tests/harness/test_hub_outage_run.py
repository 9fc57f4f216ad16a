"""A whole run of the hub outage (every worker killed, one added back) in-process, so the ledger
can be read closely: real nats-servers, leaf node and `hubctl serve` workers, devices running the
real edge code with the SIMULATED model.
"""

from __future__ import annotations

import pytest

from openautoglm.sim.runner import run_scenario
from openautoglm.sim.scenario import load_scenario

pytestmark = pytest.mark.timeout(180)


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
    assert after, f"no cloud-bound request after the new worker served at {add.until_s:.1f} s + 4 s"
    assert all(e.tier == "cloud" for e in after)
    opened = {d for _, d, _, state in ledger.breaker_events if state == "open"}
    closed = {d for _, d, _, state in ledger.breaker_events if state == "closed"}
    assert opened and closed
    assert all(kill.at_s <= t for t, *_ in ledger.breaker_events)
    # The devices' heartbeats reached the hub registry (hubctl stats) despite the outage.
    assert result.registry["devices"]["total"] == scenario.device_count
    assert result.registry["devices"]["online"] == scenario.device_count
