"""Capability facts for the router, and the refusal of a request no model here may serve.

A job needs capabilities (``Job.needs``: ``tools``, ``json_schema``, ``logprobs``); the local model
has some (its runtime's, or ``router.capabilities``), the policy marks some ``local_weak``, and the
hub advertises its models' (``Uplink.hub_models``). The router decides from these facts; a decision
with ``unmet`` capabilities is answered with :func:`unmet` (a 400 naming them).
"""

from __future__ import annotations

from typing import Any

from edge_agent.api.jobs import Job
from edge_agent.api.state import AgentState
from edge_agent.errors import ApiError
from edge_agent.router.decide import RouteDecision, cloud_model_for
from shared.capabilities import capable_model, runtime_capabilities

__all__ = ["capability_facts", "local_capabilities", "unmet"]

_PARAM = {"tools": "tools", "json_schema": "response_format", "logprobs": "logprobs"}


def local_capabilities(state: AgentState, model_id: str) -> frozenset[str]:
    """What the local model can do: ``router.capabilities`` for it, else its runtime's."""
    declared = state.settings.router.capabilities.get(model_id)
    return frozenset(declared) if declared is not None else runtime_capabilities("gguf")


def capability_facts(state: AgentState, job: Job, local_id: str) -> dict[str, Any]:
    """The ``RouteInput`` fields about capabilities (empty when the job needs none)."""
    needs = job.needs
    if not needs:
        return {}
    uplink = state.uplink
    hub_models = uplink.hub_models.values() if uplink is not None else ()
    prefer = cloud_model_for(job.model, state.settings.router)
    return {
        "needs": needs,
        "local_capabilities": local_capabilities(state, local_id),
        "capable_cloud_model": capable_model(hub_models, needs, prefer=prefer),
    }


def unmet(decision: RouteDecision, local_id: str, *, status: int = 400) -> ApiError:
    """The refusal of a request that needs ``decision.unmet`` where no model may serve it."""
    names = ", ".join(decision.unmet)
    where = (
        "the hub model that has it could not answer"
        if status != 400
        else "no reachable hub model advertises it"
    )
    return ApiError(
        status,
        f"this request needs the capability {names}: the local model {local_id!r} lacks it or "
        f"the router policy marks it local_weak, and {where}; connect a hub that serves a model "
        f"with {names}, or drop {names} from router.local_weak",
        param=_PARAM.get(decision.unmet[0]),
        code="capability_unavailable",
        headers=decision.headers(),
    )
