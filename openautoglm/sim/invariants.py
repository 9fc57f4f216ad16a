"""The promises a run must keep, checked on its ledger (pure: no I/O).

    violations = check_all(scenario, ledger)     # [] when every promise held
    print(violations[0])                         # a readable explanation with examples

Checks:
- ``answered``: every request got an answer (a 200 or a clear error) before its deadline;
- ``answered_once``: no request got two answers, and no answer is a splice of two tiers' texts;
- ``healthy_errors``: outside fault windows, every answer is a 200;
- ``outage_fallback``: during a hub outage the policy's cloud-bound requests are answered
  locally with reason ``fallback`` (``expect.outage_fallback_share``), and outside faults they
  are not (``expect.max_fallback_share_healthy``);
- ``breaker``: breakers open only when the hub fails, stay open their cooldown, and close again
  once the hub is back;
- ``rollout``: a bad plugin's staged rollout is rolled back after its first wave and never
  reaches a later one (``openautoglm.sim.rollout_fault``);
- ``deferred_lines``: no deferred batch line is lost, answered twice or failed
  (``openautoglm.sim.batch_lines``);
- ``registry``: every device's heartbeats reached the hub's registry (``hubctl stats``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openautoglm.sim.batch_lines import check_deferred_lines
from openautoglm.sim.breaker_checks import check_breaker
from openautoglm.sim.rollout_fault import check_rollouts
from openautoglm.sim.scenario import Scenario
from openautoglm.sim.windows import (
    Violation,
    Window,
    fault_windows,
    healthy,
    violation,
    windows_and_margins,
)
from shared.fleet_report.ledger import Ledger

__all__ = ["Violation", "Window", "check_all", "fault_windows"]


def check_answered(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """No request is left unanswered past its deadline."""
    bad = [e for e in ledger if e.answered_at is None or e.answered_at > e.deadline_at + 0.5]
    if not bad:
        return []
    return [
        violation(
            "answered",
            f"{len(bad)} of {len(ledger)} requests were not answered within their "
            f"{scenario.traffic.deadline_s:g} s deadline",
            bad,
        )
    ]


def check_answered_once(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """No request is answered twice, and no answer splices two tiers' texts."""
    twice = [e for e in ledger if e.answers > 1]
    spliced = [e for e in ledger if e.status == 200 and e.text_ok is False]
    out = []
    if twice:
        out.append(violation("answered_once", f"{len(twice)} requests got two answers", twice))
    if spliced:
        out.append(
            violation(
                "answered_once",
                f"{len(spliced)} answers are not exactly one tier's text (a splice, or a wrong "
                "tier header)",
                spliced,
            )
        )
    return out


def check_healthy_errors(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """Outside fault windows every answer is a 200."""
    windows, grace, recover = windows_and_margins(scenario, ledger)
    bad = [
        e
        for e in ledger
        if e.status is not None and e.status != 200 and healthy(e, windows, grace, recover)
    ]
    if not bad:
        return []
    return [violation("healthy_errors", f"{len(bad)} requests failed while no fault was on", bad)]


def check_outage_fallback(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """During hub outages cloud-bound requests fall back; outside faults they do not."""
    windows, grace, recover = windows_and_margins(scenario, ledger)
    out: list[Violation] = []
    for w in (w for w in windows if w.outage and w.end - w.start > grace):
        judged = [
            e
            for e in ledger
            if e.intended_tier == "cloud"
            and (w.sites is None or e.site in w.sites)
            and w.start + grace <= e.sent_at <= w.end
        ]
        fell = [e for e in judged if e.tier == "edge" and e.reason == "fallback"]
        if not judged:
            continue
        share = len(fell) / len(judged)
        if share < scenario.expect.outage_fallback_share:
            others = [e for e in judged if e not in fell]
            out.append(
                violation(
                    "outage_fallback",
                    f"during the {w.kind} outage ({w.start:.1f}–{w.end:.1f} s) only "
                    f"{len(fell)} of {len(judged)} cloud-bound requests ({share:.0%}) were answered "
                    f"locally with reason fallback; the policy promises at least "
                    f"{scenario.expect.outage_fallback_share:.0%}",
                    others,
                )
            )
    calm = [e for e in ledger if e.intended_tier == "cloud" and healthy(e, windows, grace, recover)]
    fell = [e for e in calm if e.reason == "fallback"]
    limit = scenario.expect.max_fallback_share_healthy
    if calm and len(fell) / len(calm) > limit:
        out.append(
            violation(
                "outage_fallback",
                f"{len(fell)} of {len(calm)} cloud-bound requests fell back while no fault was "
                f"on ({len(fell) / len(calm):.0%} > {limit:.0%})",
                fell,
            )
        )
    return out


Check = Callable[[Scenario, Ledger], list[Violation]]


def check_registry(scenario: Scenario, registry: dict[str, Any] | str) -> list[Violation]:
    """Every device's heartbeats reached the hub's registry (``hubctl stats`` after the run)."""
    if isinstance(registry, str):
        return [Violation("registry", f"the hub registry could not be read: {registry}")]
    devices = registry.get("devices", {})
    want = scenario.device_count
    problems = []
    if devices.get("total", 0) < want:
        problems.append(f"{devices.get('total', 0)} of {want} devices are in the registry")
    for state in ("never_seen", "offline"):
        if devices.get(state, 0):
            problems.append(f"{devices[state]} devices are {state.replace('_', ' ')}")
    if not problems:
        return []
    return [
        Violation(
            "registry",
            "the hub does not see every device's heartbeats: " + "; ".join(problems),
            (f"registry summary of this fleet: {devices}",),
        )
    ]


def check_all(
    scenario: Scenario, ledger: Ledger, *, registry: dict[str, Any] | str | None = None
) -> list[Violation]:
    """Every check; an empty list means the run kept every promise.

    ``registry`` (the registry's summary of this fleet, counted as ``hubctl stats --json`` does,
    or why it could not be read) adds the heartbeat check.
    """
    checks: list[Check] = [
        check_answered,
        check_answered_once,
        check_healthy_errors,
        check_outage_fallback,
        check_breaker,
        check_rollouts,
        check_deferred_lines,
    ]
    found = [v for check in checks for v in check(scenario, ledger)]
    if registry is not None:
        found += check_registry(scenario, registry)
    return found
