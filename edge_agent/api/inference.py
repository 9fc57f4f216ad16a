"""``/v1/embeddings`` and ``/v1/classify``: one-shot model calls, run off the event loop.

``classify_rows`` is the transport-free core of ``/v1/classify`` that gRPC ``ModelInfer`` shares.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from edge_agent.api.http_io import json_response, parse_body, read_json
from edge_agent.api.openai_fields import shorten
from edge_agent.api.schemas import ClassifyRequest, EmbeddingRequest
from edge_agent.api.state import AgentState, agent_state
from edge_agent.errors import ApiError
from edge_agent.router.hard_example import batch_confidence, joint_route
from edge_agent.uplink.errors import CloudFailed, CloudUnavailable
from shared.protocol import ClassifyResult, InferRequest
from shared.reasons import RouteReason, Tier
from shared.runtimes.compute_thread import run_compute
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.onnx import Classification, OnnxRuntime
from shared.telemetry import GenAiCall
from shared.telemetry.genai import Operation


@contextlib.contextmanager
def _traced(state: AgentState, operation: Operation, model: str) -> Iterator[Callable[[int], None]]:
    """A GenAI span and metrics around a one-shot model call; call ``done(inputs)`` on success."""
    call = GenAiCall.start(state.metrics.genai, operation, request_model=model, tier="edge")

    def done(inputs: int) -> None:
        call.finish(
            response_model=model, input_tokens=inputs, output_tokens=0, finish_reason="stop"
        )

    try:
        yield done
    except BaseException as exc:
        call.fail(type(exc).__name__, str(exc))
        raise


async def embeddings(request: Request) -> Response:
    """OpenAI embeddings: text for GGUF models, token ids for ONNX embedders."""
    state = agent_state(request)
    req = parse_body(
        EmbeddingRequest, await read_json(request, max_bytes=state.settings.max_body_bytes)
    )
    runtime = state.registry.get(req.model).runtime
    raw = req.input
    count = 1 if isinstance(raw, str) or not isinstance(raw[0], (str, list)) else len(raw)
    if count > state.settings.max_embedding_inputs:
        raise ApiError(
            400,
            f"`input` holds {count} items; at most {state.settings.max_embedding_inputs} are "
            "accepted per request (setting max_embedding_inputs)",
            param="input",
        )
    deadline = time.monotonic() + state.settings.request_timeout_s
    if isinstance(runtime, GgufRuntime):
        if isinstance(raw, str):
            texts = [raw]
        elif all(isinstance(x, str) for x in raw):
            texts = [str(x) for x in raw]
        else:
            raise ApiError(
                400,
                f"model {req.model!r} embeds text; send `input` as a string or a list of strings",
                param="input",
            )
        with _traced(state, "embeddings", req.model) as done:
            # On the compute thread, between decode steps: a second thread running llama.cpp
            # would slow every stream of the process (see shared.runtimes.compute_thread).
            vectors, used = await run_compute(runtime.embed, texts, deadline=deadline)
            done(used)
    elif isinstance(runtime, OnnxRuntime) and runtime.task == "embed":
        if isinstance(raw, str) or any(isinstance(x, str) for x in raw):
            raise ApiError(
                400,
                f"the ONNX embedder {req.model!r} takes token ids; send `input` as a list of "
                "integers or a list of such lists",
                param="input",
            )
        rows = (
            [list(map(int, r)) for r in raw]
            if isinstance(raw[0], list)
            else [[int(x) for x in raw]]
        )
        used = sum(len(r) for r in rows)
        vectors = await embed_token_rows(state, req.model, rows)
    else:
        raise ApiError(
            400,
            f"model {req.model!r} does not make embeddings; use /v1/classify",
            param="model",
            code="wrong_model_type",
        )
    if req.dimensions is not None:
        vectors = shorten(vectors, req.dimensions)
    return json_response(
        {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": _encode(v, req.encoding_format or "float"),
                }
                for i, v in enumerate(vectors)
            ],
            "model": req.model,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }
    )


async def embed_token_rows(
    state: AgentState, model: str, rows: list[list[int]]
) -> list[list[float]]:
    """Embed token id ``rows`` with the ONNX embedder ``model`` (REST and gRPC share it)."""
    runtime = state.registry.get(model).runtime
    if not (isinstance(runtime, OnnxRuntime) and runtime.task == "embed"):
        raise ApiError(
            400,
            f"model {model!r} is not an ONNX embedder",
            param="model",
            code="wrong_model_type",
        )
    with _traced(state, "embeddings", model) as done:
        vectors = await asyncio.to_thread(runtime.embed, rows)
        done(sum(len(r) for r in rows))
    return vectors


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    # The official client asks for base64: little-endian float32, as OpenAI sends it.
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


async def classify(request: Request) -> Response:
    """Run an ONNX classifier on one feature vector or a batch; hard rows may go to the hub."""
    state = agent_state(request)
    req = parse_body(
        ClassifyRequest, await read_json(request, max_bytes=state.settings.max_body_bytes)
    )
    rows: list[list[float]] = req.input if isinstance(req.input[0], list) else [req.input]
    answer = await classify_rows(state, req.model, rows)
    return json_response(
        {
            "object": "list",
            "model": req.model,
            "data": [
                {
                    "index": i,
                    "label": r.label,
                    "probabilities": r.probabilities,
                    "confidence": r.confidence,
                    "tier": answer.tiers[i],
                }
                for i, r in enumerate(answer.results)
            ],
            "usage": {"input_rows": len(rows), "escalated_rows": answer.tiers.count("cloud")},
        },
        headers=answer.headers(),
    )


@dataclass(frozen=True)
class Classified:
    """A classified batch: one result and one tier per row, and the batch's tier and reason."""

    results: list[Classification]
    tiers: list[str]
    tier: Tier
    reason: RouteReason

    def headers(self) -> dict[str, str]:
        """``x-agl-tier``/``x-agl-reason`` of the batch."""
        return {"x-agl-tier": str(self.tier), "x-agl-reason": str(self.reason)}


async def classify_rows(state: AgentState, model: str, rows: list[list[float]]) -> Classified:
    """Classify ``rows`` with the ONNX classifier ``model``; hard rows may go to the hub.

    The transport-free part of ``/v1/classify`` (REST and gRPC ``ModelInfer`` share it);
    raises :class:`ApiError` for an unknown model, a model of another kind or ragged rows.
    """
    served = state.registry.get(model)
    runtime = served.runtime
    if not (isinstance(runtime, OnnxRuntime) and runtime.task == "classify"):
        raise ApiError(
            400,
            f"model {model!r} is not an ONNX classifier; /v1/classify needs one",
            param="model",
            code="wrong_model_type",
        )
    if len({len(r) for r in rows}) != 1:
        raise ApiError(
            400, "every feature vector in `input` must have the same length", param="input"
        )
    with _traced(state, "classify", model) as done:
        results = await asyncio.to_thread(runtime.classify, rows)
        done(len(rows))
    tiers = ["edge"] * len(rows)
    hard: list[int] = []
    answered: list[ClassifyResult] | None = None
    joint = served.spec.hard_example
    if joint is not None and state.uplink is not None:
        probs = np.asarray([list(r.probabilities.values()) for r in results])
        hard = [
            i for i, c in enumerate(batch_confidence(probs, joint.method)) if c < joint.threshold
        ]
        if hard:
            answered = await _classify_in_cloud(state, joint.cloud_model, [rows[i] for i in hard])
    for i, found in zip(hard, answered, strict=True) if answered is not None else ():
        results[i] = Classification(found.label, dict(found.probabilities), found.confidence)
        tiers[i] = "cloud"
    tier, reason = joint_route(rows=len(rows), hard=len(hard), escalated=answered is not None)
    return Classified(results, tiers, tier, reason)


async def _classify_in_cloud(
    state: AgentState, model: str, rows: list[list[float]]
) -> list[ClassifyResult] | None:
    """The hub's answers for ``rows``, or None when it cannot answer (the edge's answers stand)."""
    uplink = state.uplink
    if uplink is None or not uplink.available():
        return None
    req = InferRequest(
        id=uuid.uuid4().hex,
        device=state.settings.device_id,
        model=model,
        kind="classify",
        features=rows,
    )
    try:
        result = await uplink.complete(req, timeout=state.settings.hub.request_timeout_s)
    except (CloudUnavailable, CloudFailed) as exc:
        state.note_cloud_failure(exc)
        return None
    if not result.classifications or len(result.classifications) != len(rows):
        return None
    return list(result.classifications)
