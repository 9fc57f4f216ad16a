"""The breaker invariant: breakers open only in faults, after enough failures, hold their
cooldown, and close again once the hub is back (transitions come from the ledger)."""

from __future__ import annotations

from openautoglm.sim.scenario import Scenario
from openautoglm.sim.windows import EXAMPLES, Violation, Window, violation, windows_and_margins
from shared.fleet_report.ledger import Ledger, LedgerEntry

__all__ = ["check_breaker"]


def check_breaker(scenario: Scenario, ledger: Ledger) -> list[Violation]:
    """Breakers open only in faults, after the configured failures, and close once the hub is back."""
    windows, grace, recover = windows_and_margins(scenario, ledger)
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
                tuple(stray[:EXAMPLES]),
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
                    tuple(missing[:EXAMPLES]),
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
        violation(
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
            tuple(stuck[:EXAMPLES]),
        )
    ]
