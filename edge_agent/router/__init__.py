"""The edge router: pure decisions about where a request is answered, and why.

    from edge_agent.router import RouteInput, RouterConfig, decide
    decision = decide(RouteInput(prompt_tokens=900, model="glm-4-plus"), cfg)

- ``policy``: the config models (rules, aliases, load SLO, cascade), embedded in the edge settings;
- ``decide``: the ordered decision (``RouteInput`` → ``RouteDecision``);
- ``cascade``: judging a local answer by its token logprobs and settling the decision;
- ``calibrate``: choosing the cascade threshold for a target escalation share;
- ``hard_example``: Sedna-style hard-example judges for ONNX classifiers.

Nothing here does I/O; the API layer feeds it facts and acts on the answers.
"""

from edge_agent.router.calibrate import CalibrationResult, calibrate, read_prompts_jsonl
from edge_agent.router.cascade import Confidence, FirstKBuffer, Judgement, judge, settle
from edge_agent.router.decide import (
    RouteDecision,
    RouteInput,
    cloud_model_for,
    decide,
    fallback,
    parse_tier_header,
)
from edge_agent.router.hard_example import (
    batch_confidence,
    cross_entropy_confidence,
    is_hard,
    max_prob_confidence,
)
from edge_agent.router.policy import CascadeConfig, PolicyRule, RouterConfig
from shared.reasons import RouteReason, Tier

__all__ = [
    "CalibrationResult",
    "CascadeConfig",
    "Confidence",
    "FirstKBuffer",
    "Judgement",
    "PolicyRule",
    "RouteDecision",
    "RouteInput",
    "RouteReason",
    "RouterConfig",
    "Tier",
    "batch_confidence",
    "calibrate",
    "cloud_model_for",
    "cross_entropy_confidence",
    "decide",
    "fallback",
    "is_hard",
    "judge",
    "max_prob_confidence",
    "parse_tier_header",
    "read_prompts_jsonl",
    "settle",
]
