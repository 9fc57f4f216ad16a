"""Pick the cascade threshold from scores of sample prompts, like RouteLLM's calibration.

Score a representative set of prompts with the local model (the mean token logprob of each answer),
then ask for the share of traffic that may go to the cloud. The lowest-scoring prompts escalate:
a prompt escalates when its score is *below* the threshold, the same test that
:func:`edge_agent.router.cascade.judge` makes with ``min_mean_logprob``.

    records = read_prompts_jsonl(Path("prompts.jsonl").read_text())
    result = calibrate([score(r) for r in records], target_escalation=0.2)
    # -> [router.cascade] min_mean_logprob = result.threshold
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError

__all__ = [
    "CalibrationResult",
    "ChatMessage",
    "PromptFileError",
    "PromptRecord",
    "calibrate",
    "read_prompts_jsonl",
]


@dataclass(frozen=True)
class CalibrationResult:
    """The chosen threshold and the share of the sample prompts it would escalate."""

    threshold: float
    """Use as ``min_mean_logprob``: scores below it escalate."""
    escalated_share: float
    """Share of the calibration scores strictly below ``threshold``."""
    n: int
    """Number of scores calibrated on."""


def calibrate(scores: Sequence[float], target_escalation: float) -> CalibrationResult:
    """Choose the threshold whose escalated share of ``scores`` is closest to the target.

    The threshold sits halfway between the last escalated and the first kept score, so small
    shifts in scoring do not flip the prompts at the edge. Tied scores escalate together, so with
    many ties the share can only approach the target; on a tie between two shares the lower wins.
    Raise :class:`ConfigError` for a target outside (0, 1), no scores or non-finite scores.
    """
    if not (isinstance(target_escalation, int | float) and 0 < target_escalation < 1):
        raise ConfigError(
            f"target escalation share must be between 0 and 1 (exclusive), got {target_escalation!r}; "
            "e.g. 0.2 sends about a fifth of the prompts to the cloud"
        )
    if len(scores) == 0:
        raise ConfigError("no scores to calibrate on; score at least one sample prompt first")
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        raise ConfigError(
            f"{len(bad)} score(s) are not finite numbers (first at index {bad[0]}: {scores[bad[0]]!r}); "
            "drop prompts whose answers had no tokens or a zero-probability token"
        )
    ordered = sorted(float(s) for s in scores)
    n = len(ordered)
    distinct = sorted(set(ordered))
    # Escalating "everything below distinct[i]" for each i, plus "everything".
    best_count = -1
    for value in [*distinct, math.inf]:
        count = bisect.bisect_left(ordered, value)
        if best_count < 0 or abs(count / n - target_escalation) < abs(
            best_count / n - target_escalation
        ):
            best_count = count
    threshold = _threshold_for(ordered, best_count)
    return CalibrationResult(threshold=threshold, escalated_share=best_count / n, n=n)


def _threshold_for(ordered: list[float], count: int) -> float:
    """A threshold with exactly ``count`` scores of ``ordered`` strictly below it."""
    if count == 0:
        return ordered[0]
    if count == len(ordered):
        return math.nextafter(ordered[-1], math.inf)
    low, high = ordered[count - 1], ordered[count]
    mid = low + (high - low) / 2
    # Floating-point rounding may put the midpoint on ``low``; the next float above it still splits.
    return mid if low < mid else math.nextafter(low, math.inf)


class ChatMessage(BaseModel):
    """One chat message of a calibration prompt."""

    model_config = ConfigDict(extra="ignore")

    role: str = Field(min_length=1, description="system, user, assistant …")
    content: str = Field(description="The message text.")


class PromptRecord(BaseModel):
    """One calibration prompt: either a plain ``prompt`` or chat ``messages`` (not both).

    Other keys on the line (ids, labels …) are ignored.
    """

    model_config = ConfigDict(extra="ignore")

    prompt: str | None = Field(None, description="A plain prompt, sent as one user message.")
    messages: list[ChatMessage] | None = Field(
        None, min_length=1, description="A chat conversation to answer."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PromptRecord:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError('give exactly one of "prompt" (a string) or "messages" (a list)')
        return self

    def as_messages(self) -> list[ChatMessage]:
        """The record as chat messages (a plain prompt becomes one user message)."""
        if self.messages is not None:
            return list(self.messages)
        return [ChatMessage(role="user", content=self.prompt or "")]


class PromptFileError(ConfigError):
    """A line of a prompts JSONL file cannot be read; ``line`` is 1-based."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(
            f"line {line}: {problem}; "
            'each line must be {"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}'
        )
        self.line = line
        self.problem = problem


def read_prompts_jsonl(text: str) -> list[PromptRecord]:
    """Parse a JSONL string of prompts; blank lines are skipped, bad lines raise with their number."""
    records: list[PromptRecord] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(
                number, f"not valid JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        if not isinstance(data, dict):
            raise PromptFileError(number, f"expected a JSON object, got {type(data).__name__}")
        try:
            records.append(PromptRecord.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                (".".join(str(p) for p in err["loc"]) + ": " if err["loc"] else "") + err["msg"]
                for err in exc.errors()
            )
            raise PromptFileError(number, problems) from exc
    if not records:
        raise ConfigError("the prompts file holds no prompts; add one JSON object per line")
    return records
