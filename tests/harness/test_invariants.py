"""The invariant checks on hand-made ledgers: each broken promise is caught and explained."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from openautoglm.sim.invariants import check_all, fault_windows
from openautoglm.sim.scenario import Scenario
from shared.fleet_report.ledger import BatchLineMark, FaultMark, Ledger, LedgerEntry

BASE: dict[str, Any] = {
    "name": "t",
    "duration_s": 20,
    "sites": [{"name": "a", "devices": 2}, {"name": "b", "devices": 2}],
    "arrivals": {"rate_per_device": 1},
    "prompts": [{"name": "p", "words": 5, "weight": 1}],
    "traffic": {"deadline_s": 10},
    "edge": {
        "hub": {
            "request_timeout_s": 3,
            "first_chunk_timeout_s": 3,
            "chunk_timeout_s": 3,
            "breaker_failures": 2,
            "breaker_cooldown_s": 2,
        }
    },
}


def _scenario(**changes: Any) -> Scenario:
    return Scenario.model_validate({**BASE, **changes})


def _entry(
    ledger: Ledger,
    sent: float,
    *,
    device: str = "a-000",
    intended: str = "cloud",
    tier: str | None = "cloud",
    reason: str | None = "policy",
    status: int | None = 200,
    latency: float | None = 0.1,
    answers: int = 1,
    text_ok: bool | None = True,
) -> LedgerEntry:
    entry = ledger.open(
        device=device,
        site=device.split("-")[0],
        prompt_class="p",
        prompt_tokens=9,
        stream=False,
        intended_tier=intended,
        sent_at=sent,
        deadline_at=sent + 10,
    )
    entry.answered_at = None if latency is None else sent + latency
    entry.status, entry.tier, entry.reason = status, tier, reason
    entry.answers, entry.text_ok = answers, text_ok
    return entry


def test_a_clean_ledger_keeps_every_promise() -> None:
    ledger = Ledger()
    for t in range(10):
        _entry(ledger, t)
        _entry(ledger, t + 0.5, intended="edge", tier="edge", reason="default")
    assert check_all(_scenario(), ledger) == []


def test_unanswered_and_late_requests_are_named_with_their_story() -> None:
    ledger = Ledger()
    _entry(ledger, 1.0, latency=None)
    _entry(ledger, 2.0, latency=12.0)
    _entry(ledger, 3.0)
    [violation] = check_all(_scenario(), ledger)
    assert violation.check == "answered"
    assert "2 of 3 requests were not answered within their 10 s deadline" in violation.message
    assert "#0 a-000 sent at 1.00 s (p, json, policy cloud) → " in violation.examples[0]
    assert violation.examples[1].endswith("→ 200 cloud/policy after 12.00 s")


def test_two_answers_and_spliced_texts_break_answered_once() -> None:
    ledger = Ledger()
    _entry(ledger, 1.0, answers=2)
    _entry(ledger, 2.0, text_ok=False)
    found = check_all(_scenario(), ledger)
    assert [v.check for v in found] == ["answered_once", "answered_once"]
    assert "1 requests got two answers" in found[0].message
    assert "not exactly one tier's text" in found[1].message


def test_errors_outside_fault_windows_are_violations_but_inside_are_not() -> None:
    faults = [{"at_s": 5, "kind": "slow_hub", "duration_s": 2}]
    ledger = Ledger()
    _entry(ledger, 1.0, status=502)
    _entry(ledger, 6.0, status=502)
    [violation] = check_all(_scenario(faults=faults), ledger)
    assert violation.check == "healthy_errors"
    assert violation.examples[0].startswith("#0 ")


def test_an_outage_without_fallback_breaks_the_policy_promise() -> None:
    faults = [{"at_s": 2, "kind": "kill_worker", "worker": "all"}]
    ledger = Ledger()
    for t in (4.0, 5.0, 6.0, 7.0):
        _entry(ledger, t, tier="edge", reason="fallback")
    for t in (8.0, 9.0):  # still sent to the hub during the outage: wrong
        _entry(ledger, t, device="b-000", status=200)
    found = [v for v in check_all(_scenario(faults=faults), ledger) if v.check == "outage_fallback"]
    assert len(found) == 1
    assert "only 4 of 6 cloud-bound requests (67%)" in found[0].message
    assert "at least 90%" in found[0].message


def test_an_outage_ends_when_a_worker_is_being_added_not_when_it_is_seen_serving() -> None:
    faults = [
        {"at_s": 2, "kind": "kill_worker", "worker": "all"},
        {"at_s": 6, "kind": "add_worker"},
    ]
    ledger = Ledger()
    # Seen serving only at 8.5 s (a poll late on a busy box); it served from about 6.5 s.
    ledger.faults += [FaultMark("kill_worker", 2, 2), FaultMark("add_worker", 6, 8.5)]
    [outage, add] = fault_windows(_scenario(faults=faults), ledger.faults)
    assert (outage.outage, outage.start, outage.end) == (True, 2, 6)
    assert (add.outage, add.start, add.end) == (False, 6, 8.5)
    for t in (3.0, 4.0, 5.0):
        _entry(ledger, t, tier="edge", reason="fallback")
    for t in (6.6, 7.0, 8.0):  # the new worker already answers: not a broken promise
        _entry(ledger, t)
    found = check_all(_scenario(faults=faults), ledger)
    assert [v for v in found if v.check == "outage_fallback"] == []


def test_a_partition_judges_only_the_cut_site() -> None:
    faults = [{"at_s": 2, "kind": "partition_site", "site": "b", "duration_s": 6}]
    windows = fault_windows(_scenario(faults=faults))
    assert [(w.kind, w.outage, w.sites) for w in windows] == [
        ("partition_site", True, frozenset({"b"}))
    ]
    ledger = Ledger()
    _entry(ledger, 4.0, device="a-000")  # site a keeps its cloud
    _entry(ledger, 4.0, device="b-000", tier="edge", reason="fallback")
    assert [v for v in check_all(_scenario(faults=faults), ledger) if v.check != "breaker"] == []


def test_fallback_while_healthy_is_a_violation() -> None:
    ledger = Ledger()
    for t in range(10):
        _entry(ledger, t, tier="edge", reason="fallback" if t < 2 else "policy")
    [violation] = check_all(_scenario(), ledger)
    assert violation.check == "outage_fallback"
    assert "2 of 10 cloud-bound requests fell back while no fault was on (20% > 2%)" in str(
        violation
    )


def test_breaker_that_opens_without_a_fault_or_leaks_while_open_is_caught() -> None:
    ledger = Ledger()
    ledger.breaker_events.append((3.0, "a-000", "closed", "open"))
    _entry(ledger, 3.5)  # sent to the hub while its breaker is open (cooldown 2 s)
    found = [v for v in check_all(_scenario(), ledger) if v.check == "breaker"]
    assert [v.message for v in found] == [
        "1 breakers opened while no fault was on",
        "1 requests went to the hub while their device's breaker was open (cooldown 2 s)",
    ]


def test_breaker_must_open_in_an_outage_and_close_after() -> None:
    faults = [
        {"at_s": 2, "kind": "kill_worker", "worker": "all"},
        {"at_s": 8, "kind": "add_worker"},
    ]
    ledger = Ledger()
    for t in (4.0, 5.0, 6.0, 7.0):  # 4 cloud-bound requests > breaker_failures = 2
        _entry(ledger, t, device="a-000", tier="edge", reason="fallback")
        _entry(ledger, t, device="a-001", tier="edge", reason="fallback")
    ledger.breaker_events.append((4.2, "a-001", "closed", "open"))
    _entry(ledger, 16.0, device="a-001", tier="edge", reason="fallback")  # never closed again
    found = [v for v in check_all(_scenario(faults=faults), ledger) if v.check == "breaker"]
    assert len(found) == 2
    assert "1 devices sent more than breaker_failures=2 cloud-bound requests" in found[0].message
    assert found[0].examples == ("a-000: 4 cloud-bound requests, breaker never opened",)
    assert "1 breakers did not close again after the outage ended" in found[1].message


def test_devices_missing_from_the_registry_are_reported() -> None:
    ledger = Ledger()
    seen = {"devices": {"total": 3, "online": 2, "stale": 0, "offline": 1, "never_seen": 0}}
    [violation] = check_all(_scenario(), ledger, registry=seen)
    assert violation.check == "registry"
    assert violation.message == (
        "the hub does not see every device's heartbeats: 3 of 4 devices are in the registry; "
        "1 devices are offline"
    )
    all_in = {"devices": {"total": 4, "online": 4, "stale": 0, "offline": 0, "never_seen": 0}}
    assert check_all(_scenario(), ledger, registry=all_in) == []
    [unread] = check_all(_scenario(), ledger, registry="hubctl stats failed (1): no NATS")
    assert (
        str(unread)
        == "[registry] the hub registry could not be read: hubctl stats failed (1): no NATS"
    )


def test_deferred_batch_lines_lost_duplicated_or_failed_are_caught() -> None:
    ledger = Ledger()
    marks = [BatchLineMark("a-000", "a", "batch_1", f"a-000-b0-l{i}", 6.0) for i in range(4)]
    ledger.batch_lines += marks
    for mark, answers, status in zip(marks, (1, 0, 2, 1), (200, None, 200, 500), strict=True):
        mark.answers, mark.status = answers, status
    found = [v for v in check_all(_scenario(), ledger) if v.check == "deferred_lines"]
    assert [v.message for v in found] == [
        "1 of 4 deferred batch lines were lost",
        "1 of 4 deferred batch lines were answered twice",
        "1 of 4 deferred batch lines were answered with an error",
    ]
    assert found[0].examples == ("a-000-b0-l1 (batch batch_1, submitted at 6.0 s): 0 answers",)
    for mark in marks:
        mark.answers, mark.status = 1, 200
    assert [v for v in check_all(_scenario(), ledger) if v.check == "deferred_lines"] == []


def test_batches_need_leaf_nodes_and_submit_times_inside_the_run() -> None:
    with pytest.raises(
        ValidationError, match=r"batches\.device_share needs hub\.leaf_nodes = true"
    ):
        _scenario(batches={"device_share": 0.5}, hub={"leaf_nodes": False})
    with pytest.raises(ValidationError, match=r"batches\.submit_at_s \[25\.0\] is after the run"):
        _scenario(batches={"device_share": 0.5, "submit_at_s": [1, 25]})
