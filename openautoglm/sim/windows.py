"""What the invariant checks share: fault windows, the margins around them, readable examples.

windows, grace, recover = windows_and_margins(scenario)
healthy(entry, windows, grace, recover)    # no fault touched this request
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openautoglm.sim.scenario import Scenario
from shared.fleet_report.ledger import FaultMark, Ledger, LedgerEntry

__all__ = [
    "EXAMPLES",
    "Violation",
    "Window",
    "fault_windows",
    "healthy",
    "show",
    "violation",
    "windows_and_margins",
]

#: Offending requests quoted per violation.
EXAMPLES = 5


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


def fault_windows(scenario: Scenario, marks: Sequence[FaultMark] = ()) -> list[Window]:
    """The windows the scenario's faults disturb, with hub outages marked.

    ``marks`` (the ledger's, in the order they were applied) give the times things really
    happened: a worker added at 7 s may serve only at 9 s on a busy machine, a restarted
    nats-server listens a little after its ``down_s``.
    """
    faults = sorted(scenario.faults, key=lambda f: f.at_s)
    real = len(marks) == len(faults) and all(
        m.kind == f.kind for m, f in zip(marks, faults, strict=True)
    )
    times = [(m.at_s, m.until_s) for m in marks] if real else [(f.at_s, f.until_s) for f in faults]
    out: list[Window] = []
    for i, f in enumerate(faults):
        start, until = times[i]
        if f.kind == "kill_worker":
            if f.worker == "all" or scenario.hub.workers <= 1:
                # The outage ends when a worker is being added: from then on one may serve
                # at any moment (the ``until`` mark, "serving", is seen a poll late, and
                # later still on a busy machine). The add's own window covers the rest.
                back = next(
                    (
                        times[j][0]
                        for j in range(i + 1, len(faults))
                        if faults[j].kind == "add_worker"
                    ),
                    None,
                )
                out.append(Window(f.kind, start, back or scenario.duration_s, outage=True))
            else:
                out.append(Window(f.kind, start, start, outage=False))
        elif f.kind == "partition_site":
            outage = f.mode != "delay"
            out.append(Window(f.kind, start, until, outage, frozenset({f.site or ""})))
        elif f.kind == "restart_nats":
            end = until if real else start + f.down_s
            out.append(Window(f.kind, start, end, outage=not scenario.hub.cluster))
        else:  # add_worker (until: serving), slow_hub, collector_down, clock_jump
            out.append(Window(f.kind, start, until, outage=False))
    return out


def show(e: LedgerEntry) -> str:
    got = "no answer" if e.status is None else f"{e.status} {e.tier}/{e.reason}"
    lat = "" if e.latency_s is None else f" after {e.latency_s:.2f} s"
    why = f": {e.error}" if e.error else ""
    return (
        f"#{e.id} {e.device} sent at {e.sent_at:.2f} s ({e.prompt_class}, "
        f"{'stream' if e.stream else 'json'}, policy {e.intended_tier}) → {got}{lat}{why}"
    )


def violation(check: str, message: str, bad: list[LedgerEntry]) -> Violation:
    return Violation(check, message, tuple(show(e) for e in bad[:EXAMPLES]))


def healthy(e: LedgerEntry, windows: list[Window], grace: float, recover: float) -> bool:
    return not any(w.covers(e, before=grace, after=recover) for w in windows)


def windows_and_margins(
    scenario: Scenario, ledger: Ledger | None = None
) -> tuple[list[Window], float, float]:
    """The fault windows (from the ledger's marks when given), the detection grace, and the
    recovery margin after a fault heals."""
    hub = scenario.edge.get("hub", {})
    cooldown = float(hub.get("breaker_cooldown_s", 10.0))
    grace = scenario.expect.detect_grace_s
    # After a fault heals: links reconnect (~1 s), open breakers wait their cooldown.
    marks = () if ledger is None else ledger.faults
    return fault_windows(scenario, marks), grace, grace + cooldown + 2.0
