"""The cascade: is the local answer sure enough, or should the cloud answer instead? (pure)

The local model generates first; its token log-probabilities (natural log) are summarised as a
:class:`Confidence` and judged against :class:`~edge_agent.router.policy.CascadeConfig`, which
gives a :class:`Judgement`. :func:`settle` turns the judgement into the route decision: keep
(edge, ``default``) or escalate (cloud, ``confidence``). When streaming, the cascade executor
(``edge_agent.execute.cascade``) holds back the first ``first_k`` pieces so nothing reaches the
client before the judgement; :class:`FirstKBuffer` is the same rule for callers that hold texts.

    judgement = judge(Confidence.from_logprobs([-0.1, -0.3, -2.0]), CascadeConfig(enabled=True))
    decision = settle(judgement, cascading)  # cloud/confidence or edge/default
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from edge_agent.router.decide import RouteDecision
from edge_agent.router.policy import CascadeConfig
from shared.reasons import RouteReason, Tier

__all__ = ["Confidence", "FirstKBuffer", "Judgement", "judge", "settle"]


@dataclass(frozen=True)
class Confidence:
    """Summary of an answer's token log-probabilities: mean, minimum and count."""

    mean: float
    min: float
    n: int

    @classmethod
    def from_logprobs(cls, logprobs: Sequence[float]) -> Confidence:
        """Summarise token logprobs; an empty list gives ``mean = min = 0.0, n = 0``.

        ``-inf`` (a token the model gave probability 0) is allowed; NaN is refused.
        """
        if not logprobs:
            return cls(mean=0.0, min=0.0, n=0)
        if any(math.isnan(lp) for lp in logprobs):
            raise ValueError("token logprobs contain NaN; the runtime returned broken scores")
        return cls(mean=math.fsum(logprobs) / len(logprobs), min=min(logprobs), n=len(logprobs))


@dataclass(frozen=True)
class Judgement:
    """The cascade's answer: escalate or keep, with the score and threshold for the trace."""

    escalate: bool
    score: float
    """The mean token logprob (``agl.route.score``)."""
    threshold: float
    """``min_mean_logprob`` it was compared with."""
    detail: str = ""


def judge(conf: Confidence, cfg: CascadeConfig) -> Judgement:
    """Escalate when the mean logprob or any single token's logprob falls below its threshold.

    An answer with no tokens is kept: there is nothing to judge it by.
    """
    threshold = cfg.min_mean_logprob
    if conf.n == 0:
        return Judgement(
            escalate=False, score=0.0, threshold=threshold, detail="no tokens to judge"
        )
    if conf.mean < threshold:
        detail = f"mean logprob {conf.mean:.3f} < {threshold:.3f}"
    elif conf.min < cfg.min_token_logprob:
        detail = f"a token's logprob {conf.min:.3f} < {cfg.min_token_logprob:.3f}"
    else:
        return Judgement(
            escalate=False,
            score=conf.mean,
            threshold=threshold,
            detail=f"mean logprob {conf.mean:.3f} over {conf.n} tokens is confident",
        )
    return Judgement(escalate=True, score=conf.mean, threshold=threshold, detail=detail)


def settle(judgement: Judgement, decision: RouteDecision) -> RouteDecision:
    """The route decision once a cascading ``decision`` has been judged.

    Escalate → cloud, ``confidence`` (the hub model is the decision's ``cloud_model``);
    keep → edge, ``default``. Either way the cascade is over (``cascade=False``).
    """
    if judgement.escalate and decision.cloud_model is not None:
        return replace(
            decision,
            tier=Tier.CLOUD,
            reason=RouteReason.CONFIDENCE,
            cascade=False,
            detail=f"cascade escalated: {judgement.detail}",
        )
    return replace(
        decision,
        tier=Tier.EDGE,
        reason=RouteReason.DEFAULT,
        cascade=False,
        detail=f"cascade kept the local answer: {judgement.detail}",
    )


@dataclass
class FirstKBuffer:
    """Hold back the first ``k`` streamed pieces until the cascade has judged them.

    buf = FirstKBuffer(k=cfg.first_k)
    for text, lp in pieces:
        if buf.push(text, lp):
            break
    buf.end()  # when generation stopped before k pieces
    if buf.decide(cfg).escalate: ...  # drop the held text, ask the hub
    else: send(buf.release())
    """

    k: int
    _texts: list[str] = field(default_factory=list, init=False)
    _logprobs: list[float] = field(default_factory=list, init=False)
    _ended: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"FirstKBuffer needs k >= 1, got {self.k}")

    @property
    def ready(self) -> bool:
        """True once ``k`` pieces are held or generation has ended."""
        return self._ended or len(self._texts) >= self.k

    @property
    def logprobs(self) -> list[float]:
        """The held pieces' logprobs, in order."""
        return list(self._logprobs)

    def push(self, text: str, logprob: float) -> bool:
        """Hold one piece; return whether the buffer is now ready to be judged."""
        self._texts.append(text)
        self._logprobs.append(logprob)
        return self.ready

    def end(self) -> None:
        """Mark the end of generation, so fewer than ``k`` pieces can be judged."""
        self._ended = True

    def decide(self, cfg: CascadeConfig) -> Judgement:
        """Judge the held pieces; call it only when :attr:`ready` is true."""
        if not self.ready:
            raise RuntimeError(
                f"FirstKBuffer holds {len(self._texts)} of {self.k} pieces and generation has "
                "not ended; push more pieces or call end() first"
            )
        return judge(Confidence.from_logprobs(self._logprobs), cfg)

    def release(self) -> list[str]:
        """Return the held texts in order and empty the buffer."""
        texts = self._texts
        self._texts = []
        self._logprobs = []
        return texts
