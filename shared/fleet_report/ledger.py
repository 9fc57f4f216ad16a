"""The ledger: one line per simulated request, written by the devices, read by checks and reports.

    entry = ledger.open(device="plant-a-003", site="plant-a", prompt_class="long", …)
    entry.answer(status=200, tier="cloud", reason="policy", …)   # once per answer received
    ledger.write_jsonl(path)

Times are seconds since traffic started (``time.monotonic()`` based, so a wall-clock jump does not
move them). ``answers`` counts every complete answer a request received: more than one is a bug.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["BatchLineMark", "FaultMark", "Ledger", "LedgerEntry"]


@dataclass(slots=True)
class LedgerEntry:
    """One request and what became of it."""

    id: int
    device: str
    site: str
    prompt_class: str
    prompt_tokens: int
    stream: bool
    intended_tier: str
    """Where the policy sends it with a healthy hub (``edge``, ``cloud`` or ``cascade``)."""
    sent_at: float
    deadline_at: float
    answered_at: float | None = None
    status: int | None = None
    """HTTP status of the answer (200, 503 …); None while unanswered."""
    tier: str | None = None
    reason: str | None = None
    ttft_s: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    completion_tokens: int = 0
    answers: int = 0
    text_ok: bool | None = None
    """Whether the text is exactly what its tier must produce (no splice of two answers)."""
    error: str | None = None

    @property
    def latency_s(self) -> float | None:
        """Answered minus sent, or None."""
        return None if self.answered_at is None else self.answered_at - self.sent_at

    @property
    def ok(self) -> bool:
        """Answered with a 200 and the right text."""
        return self.status == 200 and self.text_ok is True

    def row(self) -> dict[str, object]:
        """A JSON-ready dict, latency included."""
        out = asdict(self)
        out["latency_s"] = self.latency_s
        return out


@dataclass(slots=True)
class FaultMark:
    """When a fault started and (for windowed ones) was healed, seconds since traffic started."""

    kind: str
    at_s: float
    until_s: float
    detail: str = ""


@dataclass(slots=True)
class BatchLineMark:
    """One deferred batch line: when its batch was accepted, and how often it was answered."""

    device: str
    site: str
    batch_id: str
    custom_id: str
    submitted_at: float
    answered_at: float | None = None
    answers: int = 0
    """Output-file lines with this ``custom_id`` (1 is right; 0 lost; 2+ duplicated)."""
    status: int | None = None
    """The line's ``response.status_code`` (None: no output line, or an error-file line)."""
    error: str | None = None


@dataclass
class Ledger:
    """Every request of a run, the fault marks and the breaker transitions."""

    entries: list[LedgerEntry] = field(default_factory=list)
    faults: list[FaultMark] = field(default_factory=list)
    breaker_events: list[tuple[float, str, str, str]] = field(default_factory=list)
    """(time, device, from state, to state)."""
    batch_lines: list[BatchLineMark] = field(default_factory=list)
    rollouts: list[dict[str, object]] = field(default_factory=list)
    """``hubctl rollout start --json`` of each plugin_rollout fault, plus the harness's findings."""
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        """Seconds since traffic started."""
        return time.monotonic() - self.t0

    def open(self, **fields: object) -> LedgerEntry:
        """Record a request about to be sent."""
        entry = LedgerEntry(id=len(self.entries), **fields)  # type: ignore[arg-type]
        self.entries.append(entry)
        return entry

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def write_jsonl(self, path: Path) -> None:
        """One JSON object per line: entries, then ``{"fault": …}`` and ``{"breaker": …}`` lines."""
        with path.open("w", encoding="utf-8") as out:
            for entry in self.entries:
                out.write(json.dumps(entry.row()) + "\n")
            for mark in self.faults:
                out.write(json.dumps({"fault": asdict(mark)}) + "\n")
            for at, device, before, after in self.breaker_events:
                out.write(json.dumps({"breaker": [at, device, before, after]}) + "\n")
            for line in self.batch_lines:
                out.write(json.dumps({"batch_line": asdict(line)}) + "\n")
            for rollout in self.rollouts:
                out.write(json.dumps({"rollout": rollout}) + "\n")

    @classmethod
    def read_jsonl(cls, path: Path) -> Ledger:
        """Load what :meth:`write_jsonl` wrote (for ``--baseline`` and reports)."""
        ledger = cls()
        names = set(LedgerEntry.__dataclass_fields__)
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "fault" in row:
                ledger.faults.append(FaultMark(**row["fault"]))
            elif "breaker" in row:
                at, device, before, after = row["breaker"]
                ledger.breaker_events.append((at, device, before, after))
            elif "batch_line" in row:
                ledger.batch_lines.append(BatchLineMark(**row["batch_line"]))
            elif "rollout" in row:
                ledger.rollouts.append(row["rollout"])
            else:
                ledger.entries.append(LedgerEntry(**{k: v for k, v in row.items() if k in names}))
        return ledger
