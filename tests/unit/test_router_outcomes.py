"""The router decides the late reasons too: local_error, fallback, the cascade's outcome, joint rows."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.router import (
    CascadeConfig,
    Confidence,
    RouteInput,
    RouterConfig,
    decide,
    fallback,
    judge,
    settle,
)
from edge_agent.router.hard_example import joint_route
from shared.reasons import RouteReason, Tier


def inp(**kw: Any) -> RouteInput:
    base: dict[str, Any] = {"prompt_tokens": 3000, "model": "smollm2"}
    return RouteInput(**(base | kw))


def test_a_prompt_that_does_not_fit_escalates_as_local_error() -> None:
    d = decide(inp(fits_locally=False), RouterConfig())
    assert (d.tier, d.reason, d.cascade) == (Tier.CLOUD, RouteReason.LOCAL_ERROR, False)
    assert d.cloud_model == RouterConfig().default_cloud_model
    assert (d.first_tier, d.first_reason) == (Tier.EDGE, RouteReason.DEFAULT)
    assert "3000 tokens" in d.detail


def test_a_cascade_whose_prompt_does_not_fit_escalates_without_cascading() -> None:
    d = decide(inp(fits_locally=False), RouterConfig.model_validate({"cascade": {"enabled": True}}))
    assert (d.tier, d.reason, d.cascade) == (Tier.CLOUD, RouteReason.LOCAL_ERROR, False)


def test_a_prompt_that_does_not_fit_stays_local_only() -> None:
    d = decide(inp(fits_locally=False, plugin_route="local_only"), RouterConfig())
    assert (d.tier, d.reason) == (Tier.EDGE, RouteReason.LOCAL_ONLY)


def test_a_prompt_that_does_not_fit_escalates_even_when_the_header_asked_for_the_edge() -> None:
    d = decide(inp(fits_locally=False, tier_header="edge"), RouterConfig())
    assert (d.tier, d.reason) == (Tier.CLOUD, RouteReason.LOCAL_ERROR)
    assert d.first_reason == RouteReason.POLICY


def test_a_prompt_that_does_not_fit_without_a_cloud_is_a_fallback() -> None:
    d = decide(inp(fits_locally=False, cloud_available=False), RouterConfig())
    assert (d.tier, d.reason) == (Tier.EDGE, RouteReason.FALLBACK)
    assert (d.first_tier, d.first_reason) == (Tier.EDGE, RouteReason.DEFAULT)


def test_a_failed_escalation_becomes_fallback_and_keeps_the_first_choice() -> None:
    first = decide(inp(prompt_tokens=10, tier_header="cloud"), RouterConfig())
    d = fallback(first, "no responders")
    assert (d.tier, d.reason, d.cascade) == (Tier.EDGE, RouteReason.FALLBACK, False)
    assert (d.first_tier, d.first_reason) == (Tier.CLOUD, RouteReason.POLICY)
    assert "no responders" in d.detail
    assert d.headers() == {"x-agl-tier": "edge", "x-agl-reason": "fallback"}


def test_fallback_leaves_an_edge_decision_alone() -> None:
    first = decide(inp(prompt_tokens=10), RouterConfig())
    assert fallback(first, "whatever") is first


CASCADE = RouterConfig.model_validate({"cascade": {"enabled": True, "min_mean_logprob": -1.0}})


def test_an_unsure_cascade_settles_on_the_cloud_for_confidence() -> None:
    cascading = decide(inp(prompt_tokens=10), CASCADE)
    assert cascading.cascade
    judgement = judge(Confidence.from_logprobs([-2.0, -3.0]), CASCADE.cascade)
    d = settle(judgement, cascading)
    assert (d.tier, d.reason, d.cascade) == (Tier.CLOUD, RouteReason.CONFIDENCE, False)
    assert d.cloud_model == cascading.cloud_model
    after = fallback(d, "hub timed out")
    assert (after.tier, after.reason) == (Tier.EDGE, RouteReason.FALLBACK)
    assert after.first_reason == RouteReason.CONFIDENCE


def test_a_sure_cascade_keeps_the_local_answer() -> None:
    cascading = decide(inp(prompt_tokens=10), CASCADE)
    judgement = judge(Confidence.from_logprobs([-0.1, -0.2]), CASCADE.cascade)
    d = settle(judgement, cascading)
    assert (d.tier, d.reason, d.cascade) == (Tier.EDGE, RouteReason.DEFAULT, False)
    assert "kept" in d.detail


def test_settle_never_escalates_a_decision_without_a_cloud_model() -> None:
    local_only = decide(inp(prompt_tokens=10, plugin_route="local_only"), CASCADE)
    judgement = judge(Confidence.from_logprobs([-5.0]), CascadeConfig(enabled=True))
    assert judgement.escalate
    assert settle(judgement, local_only).tier is Tier.EDGE


@pytest.mark.parametrize(
    "rows, hard, escalated, want",
    [
        (4, 0, False, (Tier.EDGE, RouteReason.DEFAULT)),
        (4, 2, True, (Tier.EDGE, RouteReason.CONFIDENCE)),
        (4, 4, True, (Tier.CLOUD, RouteReason.CONFIDENCE)),
        (4, 2, False, (Tier.EDGE, RouteReason.FALLBACK)),
    ],
)
def test_joint_inference_rows_get_their_tier_and_reason(
    rows: int, hard: int, escalated: bool, want: tuple[Tier, RouteReason]
) -> None:
    assert joint_route(rows=rows, hard=hard, escalated=escalated) == want
