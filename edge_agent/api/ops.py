"""Operations routes: liveness, readiness, status, Prometheus metrics and the model list.

``/readyz`` only says whether the local models are loaded: a hub link that is down does not
make the agent unready (local answers still work). ``/status`` (or ``/healthz?verbose=1``)
shows the link, the models and the plugins.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_agent.api.http_io import json_response
from edge_agent.api.state import AgentState, agent_state
from edge_agent.api.status import agent_status, cloud_model_cards

__all__ = ["OPS_ROUTES"]


async def healthz(request: Request) -> Response:
    """Liveness: the process answers; ``?verbose=1`` adds what ``/status`` shows."""
    if request.query_params.get("verbose", "0").lower() not in ("", "0", "false", "no"):
        return json_response({**agent_status(agent_state(request)), "health": "ok"})
    return json_response({"status": "ok"})


async def status(request: Request) -> Response:
    """``GET /status``: models, the hub link (connected, circuit, budget) and the plugins."""
    return json_response(agent_status(agent_state(request)))


async def readyz(request: Request) -> Response:
    """Readiness: 503 until every model is loaded (and after a failed load)."""
    registry = agent_state(request).registry
    body: dict[str, Any] = {"status": registry.state, "models": sorted(registry.models)}
    if registry.error:
        body["error"] = registry.error
    if registry.state == "ready":
        return json_response(body)
    return json_response(body, status=503, headers={"Retry-After": "1"})


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    state = agent_state(request)
    state.refresh_gauges()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _model_card(state: AgentState, model_id: str) -> dict[str, Any]:
    model = state.registry.models[model_id]
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": "open-autoglm",
        "tier": "edge",
        "task": model.spec.task,
        "ready": model.runtime is not None,
    }


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: local models (tier edge), then the cloud aliases (tier cloud)."""
    state = agent_state(request)
    local = [_model_card(state, m) for m in state.registry.models]
    return json_response({"object": "list", "data": [*local, *cloud_model_cards(state)]})


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{model}``."""
    state = agent_state(request)
    model_id = request.path_params["model"]
    if model_id in state.registry.models:
        return json_response(_model_card(state, model_id))
    for card in cloud_model_cards(state):
        if card["id"] == model_id:
            return json_response(card)
    state.registry.get(model_id)  # raises the 404 with the list of models
    raise AssertionError("unreachable: the model is unknown")


OPS_ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/status", status, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
