"""Online threshold tuning for the cascade (pure): escalate a target share of the traffic.

A policy may set ``cascade.target_escalation_share`` instead of a fixed ``min_mean_logprob``.
The tuner keeps the last ``tuning_window`` confidence scores (mean token logprobs) and sets the
threshold at their ``share``-quantile, so that about that share of answers falls below it and
escalates. Old scores leave the window, so the threshold follows a drifting prompt mix; it is
clamped to ``[tuning_min_logprob, tuning_max_logprob]`` so a strange stretch of traffic cannot
push it anywhere the operator did not allow. Until ``min_samples`` scores have been seen it uses
the policy's fixed threshold.

    tuner = ThresholdTuner.from_config(cfg.cascade)
    cfg_now = tuner.cascade(cfg.cascade)     # the config with the tuned min_mean_logprob
    tuner.observe(judgement.score, escalated=judgement.escalate)
    tuner.threshold, tuner.measured_share
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from edge_agent.router.policy import CascadeConfig

__all__ = ["ThresholdTuner"]


@dataclass
class ThresholdTuner:
    """Tracks recent confidence scores and the share of them that escalated."""

    share: float
    window: int = 500
    lower: float = -6.0
    upper: float = -0.05
    fallback: float = -1.0
    min_samples: int = 20
    _scores: deque[float] = field(default_factory=deque, repr=False)
    _sorted: list[float] = field(default_factory=list, repr=False)
    _escalated: deque[bool] = field(default_factory=deque, repr=False)
    _escalated_count: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError(f"target escalation share must be in (0, 1), got {self.share}")
        if self.window < 1 or self.min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        if self.lower > self.upper:
            raise ValueError(f"bounds are reversed: lower {self.lower} > upper {self.upper}")

    @classmethod
    def from_config(cls, cfg: CascadeConfig) -> ThresholdTuner:
        """A tuner for ``cfg``; ``cfg.target_escalation_share`` must be set."""
        if cfg.target_escalation_share is None:
            raise ValueError("cascade.target_escalation_share is not set; nothing to tune")
        return cls(
            share=cfg.target_escalation_share,
            window=cfg.tuning_window,
            lower=cfg.tuning_min_logprob,
            upper=cfg.tuning_max_logprob,
            fallback=cfg.min_mean_logprob,
            min_samples=min(20, cfg.tuning_window),
        )

    def fits(self, cfg: CascadeConfig) -> bool:
        """Whether this tuner was made for ``cfg``'s tuning settings (else build a new one)."""
        return (
            cfg.target_escalation_share == self.share
            and cfg.tuning_window == self.window
            and cfg.tuning_min_logprob == self.lower
            and cfg.tuning_max_logprob == self.upper
        )

    @property
    def threshold(self) -> float:
        """The current threshold: the share-quantile of recent scores, clamped to the bounds."""
        n = len(self._sorted)
        if n < self.min_samples:
            return min(max(self.fallback, self.lower), self.upper)
        # Scores strictly below sorted[k] are at most k of n: k = share·n escalates ≈ share.
        k = min(int(self.share * n), n - 1)
        return min(max(self._sorted[k], self.lower), self.upper)

    @property
    def measured_share(self) -> float:
        """Share of the recent answers (same window) that escalated; 0.0 before any."""
        return self._escalated_count / len(self._escalated) if self._escalated else 0.0

    @property
    def samples(self) -> int:
        """Scores in the window now."""
        return len(self._scores)

    def observe(self, score: float, *, escalated: bool) -> None:
        """Record one judged answer: its mean logprob and whether it escalated."""
        if score != score:  # NaN never enters the window
            return
        self._scores.append(score)
        bisect.insort(self._sorted, score)
        self._escalated.append(escalated)
        self._escalated_count += escalated
        if len(self._scores) > self.window:
            old = self._scores.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._escalated_count -= self._escalated.popleft()

    def cascade(self, cfg: CascadeConfig) -> CascadeConfig:
        """``cfg`` with ``min_mean_logprob`` set to the current threshold."""
        return cfg.model_copy(update={"min_mean_logprob": self.threshold})
