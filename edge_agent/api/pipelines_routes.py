"""Declared pipelines, served: ``GET /v1/pipelines`` and ``POST /v1/pipelines/{name}/runs``.

    curl -s localhost:8080/v1/pipelines/summarize/runs -H 'content-type: application/json' \\
      -d '{"inputs": {"raw_text": "…"}}'

The TOML files of ``pipelines_dir`` are loaded through ``shared.pipelines`` and reloaded when
they change; a file that fails to load is logged and listed under ``errors`` while the others
stay served. Model tasks run through this agent's own request path (:func:`run_job`), so they
are routed, filtered by plugins and traced like any request. A pipeline whose last task streams
answers with SSE (``piece`` events, then ``result``) unless the body says ``"stream": false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from edge_agent.api.answer import run_job
from edge_agent.api.formatter import collect
from edge_agent.api.http_io import json_response, read_json
from edge_agent.api.jobs import Job
from edge_agent.api.state import AgentState, agent_state
from edge_agent.errors import ApiError
from edge_agent.execute.events import Pieces
from shared.pipelines import (
    MissingInputError,
    ModelCall,
    ModelCallError,
    ModelReply,
    ModelRequest,
    PipelineResult,
    TaskFailedError,
    run_graph,
)
from shared.pipelines.declared import DeclaredPipeline, PipelineCatalog
from shared.runtimes.types import GenerationEnd, SamplingParams
from shared.tasks import cancel_and_wait

__all__ = ["PIPELINE_ROUTES"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _catalog(request: Request) -> PipelineCatalog:
    app_state = request.app.state
    catalog = getattr(app_state, "pipelines", None)
    if catalog is None:
        catalog = app_state.pipelines = PipelineCatalog(agent_state(request).settings.pipelines_dir)
    await asyncio.to_thread(catalog.refresh)  # stat()s and, on a change, imports
    assert isinstance(catalog, PipelineCatalog)
    return catalog


async def list_pipelines(request: Request) -> Response:
    """``GET /v1/pipelines``: the served pipelines, and the files that failed to load."""
    catalog = await _catalog(request)
    data = [_card(p) for p in catalog.pipelines.values()]
    return json_response({"object": "list", "data": data, "errors": catalog.errors})


async def run_pipeline(request: Request) -> Response:
    """``POST /v1/pipelines/{name}/runs`` with ``{"inputs": {...}, "stream": bool}``."""
    state = agent_state(request)
    catalog = await _catalog(request)
    name = request.path_params["name"]
    declared = catalog.pipelines.get(name)
    if declared is None:
        known = ", ".join(sorted(catalog.pipelines)) or "none"
        raise ApiError(404, f"no pipeline {name!r}; served: {known}", code="pipeline_not_found")
    body = await read_json(request, max_bytes=state.settings.max_body_bytes)
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise ApiError(400, "inputs must be a JSON object of key -> value", param="inputs")
    if missing := sorted(declared.graph.inputs - set(inputs)):  # before an SSE answer starts
        readers = {k: declared.graph.readers(k) for k in missing}
        raise _api_error(MissingInputError(declared.name, readers))
    call = _model_call(state)
    tracer = state.telemetry.tracer
    if declared.graph.streaming_task is not None and body.get("stream", True) is not False:
        return StreamingResponse(
            _sse(declared, inputs, call, tracer),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    try:
        result = await run_graph(declared.graph, inputs, model_call=call, tracer=tracer)
    except (MissingInputError, TaskFailedError) as exc:
        raise _api_error(exc) from None
    return json_response(_result_body(result))


async def _sse(
    declared: DeclaredPipeline, inputs: dict[str, Any], call: ModelCall, tracer: Any
) -> AsyncIterator[bytes]:
    pieces: asyncio.Queue[str] = asyncio.Queue()
    run = asyncio.ensure_future(
        run_graph(
            declared.graph, inputs, model_call=call, on_piece=pieces.put_nowait, tracer=tracer
        )
    )
    try:
        while not run.done() or not pieces.empty():
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _event("piece", {"text": getter.result()})
            else:
                getter.cancel()
        try:
            yield _event("result", _result_body(run.result()))
        except (MissingInputError, TaskFailedError) as exc:
            err = _api_error(exc)
            yield _event("error", {"error": {"message": err.message, "code": err.code}})
    finally:
        with contextlib.suppress(Exception):  # its failure was answered as an error event
            await cancel_and_wait(run)


def _model_call(state: AgentState) -> ModelCall:
    """Model tasks through this agent's request path, as if a client had sent them."""

    async def call(req: ModelRequest) -> ModelReply:
        model = state.registry.main_id if req.model == "auto" else req.model
        defaults = SamplingParams()
        max_tokens = req.max_tokens
        job = Job(
            model=model,
            kind="chat",
            messages=[dict(m) for m in req.messages],
            prompt_text=None,
            max_tokens=max_tokens,
            params=SamplingParams(
                max_tokens=max_tokens or 0,
                temperature=defaults.temperature if req.temperature is None else req.temperature,
                top_p=defaults.top_p if req.top_p is None else req.top_p,
                stop=tuple(req.stop or ()),
                seed=req.seed,
            ),
            stream=req.on_piece is not None,
            temperature_set=req.temperature is not None,
        )
        try:
            started = await run_job(state, job, tier_header=None)
            if req.on_piece is None:
                pieces, end = await collect(started.events)
                text = "".join(p.text for p in pieces)
            else:
                text, end = await _stream(started.events, req.on_piece)
        except ApiError as exc:
            raise ModelCallError(exc.message, status=exc.status, model=model) from exc
        decision = started.decision
        return ModelReply(
            text=text,
            tier=decision.tier.value,
            reason=decision.reason.value,
            model=started.format.model,
            prompt_tokens=end.prompt_tokens,
            completion_tokens=end.completion_tokens,
        )

    return call


async def _stream(events: AsyncIterator[Any], on_piece: Any) -> tuple[str, GenerationEnd]:
    """Collect an answer while handing each piece of text to ``on_piece`` as it arrives."""

    def forward(batch: Pieces) -> None:
        if text := batch.text:  # a batch may hold only a partial UTF-8 character
            on_piece(text)

    pieces, end = await collect(events, on_pieces=forward)
    return "".join(p.text for p in pieces), end


def _api_error(exc: MissingInputError | TaskFailedError) -> ApiError:
    if isinstance(exc, MissingInputError):
        return ApiError(400, str(exc), param="inputs", code="missing_input")
    cause = exc.cause
    status = cause.status if isinstance(cause, ModelCallError) else 500
    return ApiError(status, str(exc), type="server_error", code="task_failed")


def _card(p: DeclaredPipeline) -> dict[str, Any]:
    return {
        "id": p.name,
        "object": "pipeline",
        "description": p.description,
        "inputs": sorted(p.graph.inputs),
        "outputs": [t.writes for t in p.graph.tasks],
        "tasks": [{"name": t.name, "kind": t.kind, "model": t.model} for t in p.graph.tasks],
        "streams": p.graph.streaming_task is not None,
        "file": p.path.name,
    }


def _result_body(result: PipelineResult) -> dict[str, Any]:
    return {
        "object": "pipeline.run",
        "pipeline": result.pipeline,
        "outputs": _jsonable(dict(result)),
        "trace": [t.as_dict() for t in result.trace],
        "trace_id": result.trace_id,
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if _is_json(v) else repr(v) for k, v in values.items()}


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


PIPELINE_ROUTES = [
    Route("/v1/pipelines", list_pipelines, methods=["GET"]),
    Route("/v1/pipelines/{name}/runs", run_pipeline, methods=["POST"]),
]
