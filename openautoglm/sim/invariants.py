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
- ``deferred_lines`` (not yet: offline batches, issue 11) plugs in through :data:`EXTRA_CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from openautoglm.sim.scenario import Scenario
from shared.fleet_report.ledger import Ledger, LedgerEntry

__all__ = ["EXTRA_CHECKS", "Violation", "Window", "check_all", "fault_windows"]

_EXAMPLES = 5


@dataclass(frozen=True)
class Violation:
    """One broken promise: which check, what it means, and a few offending requests."""

    check: str
    message: str
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"[{self.check}] {self.message}"]
        lines += [f"    {e}" for e in self.examples]
        return "\n".join(lines)


@dataclass(frozen=True)
class Window:
    """A stretch of time a fault disturbs: ``outage`` windows cut the hub off for ``sites``."""

    kind: str
    start: float
    end: float
    outage: bool
    sites: frozenset[str] | None = None
    """None: every site."""

    def covers(self, e: LedgerEntry, *, before: float = 0.0, after: float = 0.0) -> bool:
        """Whether ``e`` was in flight during the window (widened by ``before``/``after``)."""
        if self.sites is not None and e.site not in self.sites:
            return False
        end = e.answered_at if e.answered_at is not None else e.deadline_at
        return e.sent_at <= self.end + after and end >= self.start - before


def fault_windows(scenario: Scenario) -> list[Window]:
    """The windows the scenario's faults disturb, with hub outages marked."""
    out: list[Window] = []
    faults = sorted(scenario.faults, key=lambda f: f.at_s)
    for i, f in enumerate(faults):
        if f.kind == "kill_worker":
            if f.worker == "all" or scenario.hub.workers <= 1:
                back = next((g.at_s for g in faults[i + 1 :] if g.kind == "add_worker"), None)
                out.append(Window(f.kind, f.at_s, back or scenario.duration_s, outage=True))
            else:
                out.append(Window(f.kind, f.at_s, f.at_s, outage=False))
        elif f.kind == "partition_site":
            outage = f.mode != "delay"
            out.append(Window(f.kind, f.at_s, f.until_s, outage, frozenset({f.site or ""})))
        elif f.kind == "restart_nats":
            out.append(Window(f.kind, f.at_s, f.at_s + f.down_s, outage=not scenario.hub.cluster))
        elif f.kind == "add_worker":
            out.append(Window(f.kind, f.at_s, f.at_s, outage=False))
        else:
            out.append(Window(f.kind, f.at_s, f.until_s, outage=False))
    return out


def _show(e: LedgerEntry) -> str:
    got = "no answer" if e.status is None else f"{e.status} {e.tier}/{e.reason}"
    lat = "" if e.latency_s is None else f" after {e.latency_s:.2f} s"
    why = f": {e.error}" if e.error else ""
    return (
        f"#{e.id} {e.device} sent at {e.sent_at:.2f} s ({e.prompt_class}, "
        f"{'stream' if e.stream else 'json'}, policy {e.intended_tier}) → {got}{lat}{why}"
    )


def _violation(check: str, message: str, bad: list[LedgerEntry]) -> Violation:
    return Violation(check, message, tuple(_show(e) for e in bad[:_EXAMPLES]))


def check_answered(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """No request is left unanswered past its deadline."""
    bad = [e for e in ledger if e.answered_at is None or e.answered_at > e.deadline_at + 0.5]
    if not bad:
        return []
    return [
        _violation(
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
        out.append(_violation("answered_once", f"{len(twice)} requests got two answers", twice))
    if spliced:
        out.append(
            _violation(
                "answered_once",
                f"{len(spliced)} answers are not exactly one tier's text (a splice, or a wrong "
                "tier header)",
                spliced,
            )
        )
    return out


def _healthy(e: LedgerEntry, windows: list[Window], grace: float, recover: float) -> bool:
    return not any(w.covers(e, before=grace, after=recover) for w in windows)


def check_healthy_errors(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """Outside fault windows every answer is a 200."""
    windows, grace, recover = _windows_and_margins(scenario)
    bad = [
        e
        for e in ledger
        if e.status is not None and e.status != 200 and _healthy(e, windows, grace, recover)
    ]
    if not bad:
        return []
    return [_violation("healthy_errors", f"{len(bad)} requests failed while no fault was on", bad)]


def _windows_and_margins(scenario: Scenario) -> tuple[list[Window], float, float]:
    hub = scenario.edge.get("hub", {})
    cooldown = float(hub.get("breaker_cooldown_s", 10.0))
    grace = scenario.expect.detect_grace_s
    # After a fault heals: links reconnect (~1 s), open breakers wait their cooldown.
    return fault_windows(scenario), grace, grace + cooldown + 2.0


def check_outage_fallback(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """During hub outages cloud-bound requests fall back; outside faults they do not."""
    windows, grace, recover = _windows_and_margins(scenario)
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
                _violation(
                    "outage_fallback",
                    f"during the {w.kind} outage ({w.start:.1f}–{w.end:.1f} s) only "
                    f"{len(fell)} of {len(judged)} cloud-bound requests ({share:.0%}) were answered "
                    f"locally with reason fallback; the policy promises at least "
                    f"{scenario.expect.outage_fallback_share:.0%}",
                    others,
                )
            )
    healthy = [
        e for e in ledger if e.intended_tier == "cloud" and _healthy(e, windows, grace, recover)
    ]
    fell = [e for e in healthy if e.reason == "fallback"]
    limit = scenario.expect.max_fallback_share_healthy
    if healthy and len(fell) / len(healthy) > limit:
        out.append(
            _violation(
                "outage_fallback",
                f"{len(fell)} of {len(healthy)} cloud-bound requests fell back while no fault was "
                f"on ({len(fell) / len(healthy):.0%} > {limit:.0%})",
                fell,
            )
        )
    return out


def check_breaker(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """Breakers open only in faults, after the configured failures, and close once the hub is back."""
    windows, grace, recover = _windows_and_margins(scenario)
    hub = scenario.edge.get("hub", {})
    threshold = int(hub.get("breaker_failures", 5))
    cooldown = float(hub.get("breaker_cooldown_s", 10.0))
    out: list[Violation] = []
    opens = [(t, d) for t, d, _, after in ledger.breaker_events if after == "open"]
    stray = [
        f"{d} opened at {t:.2f} s"
        for t, d in opens
        if not any(w.start - grace <= t <= w.end + recover for w in windows)
    ]
    if stray:
        out.append(
            Violation(
                "breaker",
                f"{len(stray)} breakers opened while no fault was on",
                tuple(stray[:_EXAMPLES]),
            )
        )
    by_device: dict[str, list[LedgerEntry]] = {}
    for e in ledger:
        by_device.setdefault(e.device, []).append(e)
    for w in (w for w in windows if w.outage):
        missing = []
        for device, entries in by_device.items():
            cloud = [
                e
                for e in entries
                if e.intended_tier == "cloud"
                and (w.sites is None or e.site in w.sites)
                and w.start + grace <= e.sent_at <= w.end - 0.5
            ]
            opened = any(d == device and w.start <= t <= w.end + grace for t, d in opens)
            if len(cloud) >= threshold + 1 and not opened:
                missing.append(f"{device}: {len(cloud)} cloud-bound requests, breaker never opened")
        if missing:
            out.append(
                Violation(
                    "breaker",
                    f"during the {w.kind} outage ({w.start:.1f}–{w.end:.1f} s) {len(missing)} "
                    f"devices sent more than breaker_failures={threshold} cloud-bound requests "
                    "but their breaker stayed closed",
                    tuple(missing[:_EXAMPLES]),
                )
            )
    out += _held_open(ledger, by_device, opens, cooldown)
    if scenario.expect.breakers_reclose:
        out += _reclose(ledger, by_device, windows, cooldown, grace)
    return out


def _held_open(
    ledger: Ledger,
    by_device: dict[str, list[LedgerEntry]],
    opens: list[tuple[float, str]],
    cooldown: float,
) -> list[Violation]:
    """While a breaker is open (its cooldown), that device sends nothing new to the hub."""
    leaks = []
    for t, device in opens:
        leaks += [
            e
            for e in by_device.get(device, [])
            if e.tier == "cloud" and t + 0.05 < e.sent_at < t + cooldown - 0.05
        ]
    if not leaks:
        return []
    return [
        _violation(
            "breaker",
            f"{len(leaks)} requests went to the hub while their device's breaker was open "
            f"(cooldown {cooldown:g} s)",
            leaks,
        )
    ]


def _reclose(
    ledger: Ledger,
    by_device: dict[str, list[LedgerEntry]],
    windows: list[Window],
    cooldown: float,
    grace: float,
) -> list[Violation]:
    last_end = max((w.end for w in windows if w.outage), default=None)
    if last_end is None:
        return []
    stuck = []
    final: dict[str, str] = {}
    for _, device, _, after in ledger.breaker_events:
        final[device] = after
    for device, state in final.items():
        later = [
            e
            for e in by_device.get(device, [])
            if e.intended_tier == "cloud" and e.sent_at > last_end + cooldown + grace + 2.0
        ]
        if state != "closed" and later:
            stuck.append(
                f"{device}: still {state} after the hub came back at {last_end:.1f} s "
                f"({len(later)} cloud-bound requests sent after its cooldown)"
            )
    if not stuck:
        return []
    return [
        Violation(
            "breaker",
            f"{len(stuck)} breakers did not close again after the outage ended",
            tuple(stuck[:_EXAMPLES]),
        )
    ]


Check = Callable[[Scenario, Ledger], list[Violation]]
#: Checks added by features built later (deferred batch lines: issue 11) append here.
EXTRA_CHECKS: list[Check] = []


def check_all(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """Every check; an empty list means the run kept every promise."""
    checks: list[Check] = [
        check_answered,
        check_answered_once,
        check_healthy_errors,
        check_outage_fallback,
        check_breaker,
        *EXTRA_CHECKS,
    ]
    return [v for check in checks for v in check(scenario, ledger)]
