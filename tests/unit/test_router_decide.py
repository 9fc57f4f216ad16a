"""The router's decision order: every reason is reachable, and local_only always wins."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.router import (
    PolicyRule,
    RouteDecision,
    RouteInput,
    RouterConfig,
    decide,
    parse_tier_header,
)
from shared.reasons import RouteReason, Tier


def inp(**kw: Any) -> RouteInput:
    base: dict[str, Any] = {"prompt_tokens": 10, "model": "smollm2"}
    return RouteInput(**(base | kw))


def cfg(**kw: Any) -> RouterConfig:
    return RouterConfig.model_validate(kw)


def test_reason_enum_is_the_closed_set_from_the_design() -> None:
    assert {r.value for r in RouteReason} == {
        "policy",
        "confidence",
        "load",
        "local_error",
        "local_only",
        "capability",
        "fallback",
        "default",
    }
    assert {t.value for t in Tier} == {"edge", "cloud"}


def test_nothing_configured_answers_locally_by_default() -> None:
    d = decide(inp(), RouterConfig())
    assert (d.tier, d.reason, d.cascade, d.rule) == (Tier.EDGE, RouteReason.DEFAULT, False, None)
    assert d.cloud_model == "glm-4-plus"  # where a local_error escalation would go
    assert d.headers() == {"x-agl-tier": "edge", "x-agl-reason": "default"}


def test_plugin_local_only_beats_a_cloud_header_and_every_rule() -> None:
    c = cfg(
        rules=[{"name": "big", "min_prompt_tokens": 0, "tier": "cloud"}],
        cloud_aliases={"glm-4-plus": "glm-4-plus"},
        load_slo_s=0.1,
    )
    d = decide(
        inp(model="glm-4-plus", tier_header="cloud", plugin_route="local_only", expected_wait_s=9),
        c,
    )
    assert (d.tier, d.reason, d.cloud_model) == (Tier.EDGE, RouteReason.LOCAL_ONLY, None)


def test_a_local_only_rule_anywhere_in_the_list_beats_a_cloud_header() -> None:
    c = cfg(
        rules=[
            {"name": "first-cloud", "min_prompt_tokens": 0, "tier": "cloud"},
            {"name": "pii-model", "models": ["hr-bot"], "tier": "local_only"},
        ]
    )
    d = decide(inp(model="hr-bot", tier_header="cloud"), c)
    assert (d.tier, d.reason, d.rule) == (Tier.EDGE, RouteReason.LOCAL_ONLY, "pii-model")


def test_local_only_is_not_turned_into_fallback_when_the_cloud_is_down() -> None:
    d = decide(inp(plugin_route="local_only", cloud_available=False), RouterConfig())
    assert d.reason is RouteReason.LOCAL_ONLY


@pytest.mark.parametrize("header", ["cloud", "CLOUD", " Cloud "])
def test_cloud_tier_header_forces_the_cloud(header: str) -> None:
    c = cfg(rules=[{"name": "small", "max_prompt_tokens": 100, "tier": "edge"}])
    d = decide(inp(tier_header=header, plugin_route="edge"), c)
    assert (d.tier, d.reason) == (Tier.CLOUD, RouteReason.POLICY)
    assert "header" in d.detail


def test_edge_tier_header_beats_a_cloud_alias_and_the_load_slo() -> None:
    c = cfg(cloud_aliases={"glm-4-plus": "glm-4-plus"}, load_slo_s=1.0)
    d = decide(inp(model="glm-4-plus", tier_header="edge", expected_wait_s=30), c)
    assert (d.tier, d.reason) == (Tier.EDGE, RouteReason.POLICY)


def test_an_unknown_tier_header_is_ignored_by_decide_and_refused_by_the_parser() -> None:
    assert decide(inp(tier_header="gpu"), RouterConfig()).reason is RouteReason.DEFAULT
    with pytest.raises(ValueError, match="x-agl-tier must be 'edge' or 'cloud'"):
        parse_tier_header("gpu")
    assert parse_tier_header(None) is None
    assert parse_tier_header(" Edge") is Tier.EDGE


@pytest.mark.parametrize("route", ["edge", "cloud"])
def test_plugin_route_hint_is_policy(route: str) -> None:
    c = cfg(cloud_aliases={"glm-4-plus": "glm-4-plus"})
    d = decide(inp(model="glm-4-plus", plugin_route=route), c)
    assert (d.tier.value, d.reason) == (route, RouteReason.POLICY)


def test_cloud_alias_goes_to_the_cloud_with_the_hub_model_name() -> None:
    c = cfg(cloud_aliases={"big": "glm-4-plus"}, default_cloud_model="other")
    d = decide(inp(model="big"), c)
    assert (d.tier, d.reason, d.cloud_model) == (Tier.CLOUD, RouteReason.POLICY, "glm-4-plus")


def test_first_matching_rule_wins_and_conditions_are_anded() -> None:
    c = cfg(
        rules=[
            {
                "name": "long-and-smol",
                "min_prompt_tokens": 500,
                "models": ["smollm2"],
                "tier": "cloud",
            },
            {"name": "long", "min_prompt_tokens": 500, "tier": "edge"},
            {"name": "also-long", "min_prompt_tokens": 500, "tier": "cloud"},
        ]
    )
    d = decide(inp(prompt_tokens=600, model="other"), c)
    assert (d.tier, d.reason, d.rule) == (Tier.EDGE, RouteReason.POLICY, "long")
    d = decide(inp(prompt_tokens=600), c)
    assert (d.tier, d.rule) == (Tier.CLOUD, "long-and-smol")
    d = decide(inp(prompt_tokens=499), c)
    assert (d.reason, d.rule) == (RouteReason.DEFAULT, None)


def test_rule_matching_on_max_tokens_and_plugin_hint() -> None:
    c = cfg(
        rules=[
            {"name": "short", "max_prompt_tokens": 20, "plugin_hint": "cloud", "tier": "edge"},
        ]
    )
    rule = c.rules[0]
    assert rule.matches(prompt_tokens=20, model="m", tier_header=None, plugin_route="cloud")
    assert not rule.matches(prompt_tokens=21, model="m", tier_header=None, plugin_route="cloud")
    assert not rule.matches(prompt_tokens=5, model="m", tier_header=None, plugin_route=None)


def test_rule_on_the_tier_header_can_pin_requests_to_the_device() -> None:
    c = cfg(rules=[{"name": "no-cloud-here", "tier_header": "cloud", "tier": "local_only"}])
    assert decide(inp(tier_header="cloud"), c).reason is RouteReason.LOCAL_ONLY
    assert decide(inp(tier_header="edge"), c).reason is RouteReason.POLICY


def test_load_over_the_slo_escalates_and_at_the_slo_does_not() -> None:
    c = cfg(load_slo_s=2.0)
    d = decide(inp(expected_wait_s=2.5), c)
    assert (d.tier, d.reason) == (Tier.CLOUD, RouteReason.LOAD)
    assert decide(inp(expected_wait_s=2.0), c).reason is RouteReason.DEFAULT
    assert decide(inp(expected_wait_s=1e9), RouterConfig()).reason is RouteReason.DEFAULT


def test_cascade_answers_locally_and_asks_to_be_judged() -> None:
    d = decide(inp(), cfg(cascade={"enabled": True}))
    assert (d.tier, d.reason, d.cascade) == (Tier.EDGE, RouteReason.DEFAULT, True)
    # A matched policy is not second-guessed by the cascade.
    c = cfg(cascade={"enabled": True}, rules=[{"name": "all", "tier": "edge"}])
    assert decide(inp(), c).cascade is False


@pytest.mark.parametrize(
    "kw, config, was",
    [
        ({"tier_header": "cloud"}, {}, "policy"),
        ({"model": "glm-4-plus"}, {"cloud_aliases": {"glm-4-plus": "glm-4-plus"}}, "policy"),
        ({"expected_wait_s": 5.0}, {"load_slo_s": 1.0}, "load"),
        ({"plugin_route": "cloud"}, {}, "policy"),
    ],
)
def test_cloud_decisions_fall_back_to_the_edge_when_the_cloud_is_unavailable(
    kw: dict[str, Any], config: dict[str, Any], was: str
) -> None:
    d = decide(inp(cloud_available=False, **kw), cfg(**config))
    assert (d.tier, d.reason) == (Tier.EDGE, RouteReason.FALLBACK)
    assert "cloud unavailable" in d.detail and was in d.detail


def test_no_cascade_without_a_cloud_to_escalate_to() -> None:
    d = decide(inp(cloud_available=False), cfg(cascade={"enabled": True}))
    assert (d.tier, d.reason, d.cascade) == (Tier.EDGE, RouteReason.DEFAULT, False)
    assert "cloud unavailable" in d.detail


def test_edge_decisions_are_unchanged_when_the_cloud_is_unavailable() -> None:
    d = decide(inp(tier_header="edge", cloud_available=False), RouterConfig())
    assert (d.tier, d.reason) == (Tier.EDGE, RouteReason.POLICY)


def test_decision_is_immutable() -> None:
    d = decide(inp(), RouterConfig())
    assert isinstance(d, RouteDecision)
    with pytest.raises(AttributeError):
        d.tier = Tier.CLOUD  # type: ignore[misc]


def test_config_refuses_unknown_keys_empty_ranges_and_duplicate_rule_names() -> None:
    with pytest.raises(ValidationError, match="extra"):
        RouterConfig.model_validate({"rulez": []})
    with pytest.raises(ValidationError, match="can never match"):
        PolicyRule(name="r", min_prompt_tokens=10, max_prompt_tokens=5, tier="cloud")
    with pytest.raises(ValidationError, match="two rules are named 'r'"):
        cfg(rules=[{"name": "r", "tier": "edge"}, {"name": "r", "tier": "cloud"}])
    with pytest.raises(ValidationError, match="tier"):
        PolicyRule.model_validate({"name": "r", "tier": "gpu"})
    with pytest.raises(ValidationError):
        cfg(load_slo_s=0)
    with pytest.raises(ValidationError):
        cfg(cascade={"first_k": 0})


def test_every_config_field_has_a_description() -> None:
    from edge_agent.router import CascadeConfig

    for model in (PolicyRule, CascadeConfig, RouterConfig):
        missing = [n for n, f in model.model_fields.items() if not f.description]
        assert not missing, f"{model.__name__}: {missing}"


TOOLS = frozenset({"tools"})
ALL = frozenset({"tools", "json_schema", "logprobs", "embeddings"})


def test_a_local_weak_capability_goes_to_a_hub_model_that_has_it() -> None:
    d = decide(
        inp(needs=TOOLS, local_capabilities=ALL, capable_cloud_model="big"),
        cfg(local_weak=["tools"], cascade={"enabled": True}),
    )
    assert (d.tier, d.reason, d.cloud_model, d.cascade) == (
        Tier.CLOUD,
        RouteReason.CAPABILITY,
        "big",
        False,
    )
    assert d.needs == ("tools",) and d.unmet == ()
    assert d.headers()["x-agl-reason"] == "capability"


def test_a_capability_the_local_model_lacks_goes_to_the_hub() -> None:
    d = decide(
        inp(needs=TOOLS, local_capabilities=frozenset({"logprobs"}), capable_cloud_model="big"),
        RouterConfig(),
    )
    assert (d.tier, d.reason, d.cloud_model) == (Tier.CLOUD, RouteReason.CAPABILITY, "big")


@pytest.mark.parametrize(
    "facts",
    [
        {"capable_cloud_model": None},  # no hub model has it
        {"capable_cloud_model": "big", "cloud_available": False},  # the hub is unreachable
    ],
)
def test_with_no_capable_hub_model_the_capability_is_unmet(facts: dict[str, Any]) -> None:
    d = decide(inp(needs=TOOLS, local_capabilities=ALL, **facts), cfg(local_weak=["tools"]))
    assert (d.tier, d.reason, d.unmet) == (Tier.EDGE, RouteReason.CAPABILITY, ("tools",))


def test_needs_the_local_model_does_well_stay_local() -> None:
    d = decide(inp(needs=TOOLS, local_capabilities=ALL, capable_cloud_model="big"), RouterConfig())
    assert (d.tier, d.reason, d.unmet) == (Tier.EDGE, RouteReason.DEFAULT, ())


def test_local_only_keeps_a_weak_request_but_refuses_a_lacking_one() -> None:
    weak = decide(
        inp(needs=TOOLS, local_capabilities=ALL, plugin_route="local_only"),
        cfg(local_weak=["tools"]),
    )
    assert (weak.tier, weak.reason, weak.unmet) == (Tier.EDGE, RouteReason.LOCAL_ONLY, ())
    lacking = decide(
        inp(needs=TOOLS, local_capabilities=frozenset(), plugin_route="local_only"), RouterConfig()
    )
    assert (lacking.reason, lacking.unmet) == (RouteReason.LOCAL_ONLY, ("tools",))


def test_headers_and_cloud_aliases_beat_local_weak() -> None:
    rc = cfg(local_weak=["tools"], cloud_aliases={"gpt": "gpt-4o"})
    edge = decide(inp(needs=TOOLS, local_capabilities=ALL, tier_header="edge"), rc)
    assert (edge.tier, edge.reason, edge.unmet) == (Tier.EDGE, RouteReason.POLICY, ())
    alias = decide(inp(model="gpt", needs=TOOLS, local_capabilities=ALL), rc)
    assert (alias.tier, alias.reason, alias.cloud_model) == (
        Tier.CLOUD,
        RouteReason.POLICY,
        "gpt-4o",
    )


def test_a_failed_capability_escalation_does_not_fall_back() -> None:
    from edge_agent.router import fallback

    d = decide(
        inp(needs=TOOLS, local_capabilities=ALL, capable_cloud_model="big"),
        cfg(local_weak=["tools"]),
    )
    after = fallback(d, "timeout")
    assert after.unmet == ("tools",) and after.tier is Tier.CLOUD


def test_local_weak_names_known_capabilities_only() -> None:
    with pytest.raises(ValidationError):
        cfg(local_weak=["telepathy"])
