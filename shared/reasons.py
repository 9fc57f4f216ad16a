"""Why a request went where it went: the closed set of router reasons and tiers.

Every response carries ``x-agl-tier: <Tier>`` and ``x-agl-reason: <RouteReason>``, and the trace
records both. The reason enum is closed: add a member only together with a test that reaches it.

    RouteReason.LOAD.value == "load"
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["RouteReason", "RouteTarget", "Tier"]

RouteTarget = Literal["edge", "cloud", "local_only"]
"""Where a policy rule or a plugin sends a request; ``local_only`` also forbids any later escalation."""


class RouteReason(StrEnum):
    """Why the router picked a tier (the ``x-agl-reason`` header and ``agl.route.reason``)."""

    POLICY = "policy"
    """A rule matched: prompt tokens, requested model or alias, tier header, plugin hint."""
    CONFIDENCE = "confidence"
    """A cascade step: the local answer's token log-probabilities fell below the threshold."""
    LOAD = "load"
    """The expected local queue wait exceeded the SLO."""
    LOCAL_ERROR = "local_error"
    """The local runtime failed, so the request was escalated."""
    LOCAL_ONLY = "local_only"
    """A plugin or policy forbids leaving the device (e.g. PII)."""
    CAPABILITY = "capability"
    """The request needs a capability (tools, json_schema, logprobs …) that the local model lacks
    or that the policy marks local-weak, so a hub model that has it answers."""
    FALLBACK = "fallback"
    """The cloud was unreachable, the circuit open or the budget spent; served locally, degraded."""
    DEFAULT = "default"
    """Nothing asked for anything else."""


class Tier(StrEnum):
    """Where a request is answered (the ``x-agl-tier`` header)."""

    EDGE = "edge"
    CLOUD = "cloud"
