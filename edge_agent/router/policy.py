"""Router configuration: policy rules, cloud model aliases, the load SLO and the cascade.

These models are embedded in the edge settings (``[router]`` in the TOML file), so every field has
a description and unknown keys are refused.

    [[router.rules]]
    name = "long-prompts"
    min_prompt_tokens = 1500
    tier = "cloud"
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.reasons import RouteTarget

__all__ = ["CascadeConfig", "PolicyRule", "RouteTarget", "RouterConfig"]

Capability = Literal["tools", "json_schema", "logprobs", "embeddings"]


class PolicyRule(BaseModel):
    """One routing rule: all the conditions that are set must hold (AND); none set matches all.

    A rule whose ``tier`` is ``local_only`` beats a tier header and every other rule; other rules
    are tried in order after the tier header, plugin hints and cloud aliases, and the first match wins.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Rule name; shown in the decision and the trace.")
    min_prompt_tokens: int | None = Field(
        None, ge=0, description="Match when the prompt has at least this many tokens."
    )
    max_prompt_tokens: int | None = Field(
        None, ge=0, description="Match when the prompt has at most this many tokens."
    )
    models: list[str] | None = Field(
        None,
        min_length=1,
        description="Match when the requested model (name or alias, exact) is one of these.",
    )
    tier_header: Literal["edge", "cloud"] | None = Field(
        None, description="Match when the request's x-agl-tier header has this value."
    )
    plugin_hint: RouteTarget | None = Field(
        None, description="Match when an on_request plugin asked for this route."
    )
    tier: RouteTarget = Field(
        description="Where matching requests go; local_only keeps them on the device whatever else asks."
    )

    @model_validator(mode="after")
    def _token_range_not_empty(self) -> Self:
        lo, hi = self.min_prompt_tokens, self.max_prompt_tokens
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"rule {self.name!r}: min_prompt_tokens ({lo}) is above max_prompt_tokens ({hi}), "
                "so it can never match; swap or fix the bounds"
            )
        return self

    def matches(
        self,
        *,
        prompt_tokens: int,
        model: str,
        tier_header: str | None,
        plugin_route: str | None,
    ) -> bool:
        """Whether every condition set on this rule holds for the request."""
        if self.min_prompt_tokens is not None and prompt_tokens < self.min_prompt_tokens:
            return False
        if self.max_prompt_tokens is not None and prompt_tokens > self.max_prompt_tokens:
            return False
        if self.models is not None and model not in self.models:
            return False
        if self.tier_header is not None and tier_header != self.tier_header:
            return False
        return self.plugin_hint is None or plugin_route == self.plugin_hint


class CascadeConfig(BaseModel):
    """Answer locally first, then escalate when the answer's token log-probabilities look unsure.

    Log-probabilities are natural logs (≤ 0); ``-1.0`` as a mean is a per-token perplexity of e.
    ``edge_agent.router.calibrate`` picks ``min_mean_logprob`` for a target escalation share.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Run the cascade on requests no rule routed.")
    min_mean_logprob: float = Field(
        -1.0, le=0, description="Escalate when the mean token logprob is below this."
    )
    min_token_logprob: float = Field(
        -8.0, le=0, description="Escalate when any single token's logprob is below this."
    )
    first_k: int = Field(
        8,
        ge=1,
        description="Streaming: tokens held back and judged before the first chunk goes out.",
    )
    target_escalation_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Online tuning: keep min_mean_logprob at the quantile of recent confidence "
        "scores that escalates this share (e.g. 0.2); empty = the fixed threshold.",
    )
    tuning_window: int = Field(
        500,
        ge=20,
        le=100_000,
        description="Online tuning: recent scores the quantile is taken over.",
    )
    tuning_min_logprob: float = Field(
        -6.0, le=0, description="Online tuning: the tuned threshold never goes below this."
    )
    tuning_max_logprob: float = Field(
        -0.05, le=0, description="Online tuning: the tuned threshold never goes above this."
    )

    @model_validator(mode="after")
    def _tuning_bounds_ordered(self) -> Self:
        if self.tuning_min_logprob > self.tuning_max_logprob:
            raise ValueError(
                f"tuning_min_logprob ({self.tuning_min_logprob}) is above tuning_max_logprob "
                f"({self.tuning_max_logprob}); swap or fix the bounds"
            )
        return self


class RouterConfig(BaseModel):
    """Everything the router decides with; see ``edge_agent.router.decide`` for the order."""

    model_config = ConfigDict(extra="forbid")

    rules: list[PolicyRule] = Field(
        default_factory=list, description="Policy rules; local_only ones first, then in order."
    )
    cloud_aliases: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Requested model name -> hub model name; a request for an alias goes to the cloud, "
            'e.g. {"glm-4-plus" = "glm-4-plus"}.'
        ),
    )
    local_aliases: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Requested model name -> local model id; the alias is answered (and routed) like that "
            'model, e.g. {"glm-small" = "smollm2-135m-instruct"}.'
        ),
    )
    default_cloud_model: str = Field(
        "glm-4-plus",
        min_length=1,
        description="Hub model for escalated requests whose model is not a cloud alias.",
    )
    load_slo_s: float | None = Field(
        None,
        gt=0,
        description="Escalate when the expected local queue wait exceeds this (empty = off).",
    )
    cascade: CascadeConfig = Field(
        default_factory=CascadeConfig, description="Local-first answering judged by confidence."
    )
    capabilities: dict[str, list[Capability]] = Field(
        default_factory=dict,
        description="Local model id -> what it can do (tools, json_schema, logprobs, embeddings), "
        "overriding what its runtime can do (a GGUF chat model: all of them).",
    )
    local_weak: list[Capability] = Field(
        default_factory=list,
        description='Capabilities the local model has but does poorly (e.g. ["tools"] for a '
        "135M model): requests that need them go to a hub model that has them (reason "
        "capability), or are refused with a 400 naming the capability when none is reachable.",
    )

    @model_validator(mode="after")
    def _names_are_unique(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; give each rule its own name")
            seen.add(rule.name)
        for alias, target in self.cloud_aliases.items():
            if not alias or not target:
                raise ValueError(
                    f"cloud_aliases entry {alias!r} -> {target!r}: both names must be non-empty"
                )
        return self
