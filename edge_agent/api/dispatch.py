"""``/v1/chat/completions`` and ``/v1/completions``: validate, route, answer locally or from the hub.

request → parse → local prompt (for token counts) → router decision
    cloud  → hub answer; if the hub cannot answer before any token left: local, ``fallback``
    edge   → local answer; with the cascade on, judge the first tokens' log-probabilities
             and escalate (``confidence``) when they are too unsure
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from edge_agent.api.cloud import CloudJob, cloud_answer, cloud_sse, open_cloud_stream
from edge_agent.api.generation import collect, first_tokens, local_sse
from edge_agent.api.http_io import json_response, parse_body, read_json
from edge_agent.api.openai_format import CompletionFormat
from edge_agent.api.plugin_filters import ResponseFilter, filter_request
from edge_agent.api.schemas import ChatCompletionRequest, CompletionRequest
from edge_agent.api.tracing import note_decision, note_verdict
from edge_agent.errors import ApiError
from edge_agent.router.cascade import Confidence, judge
from edge_agent.router.decide import (
    RouteDecision,
    RouteInput,
    cloud_model_for,
    decide,
    parse_tier_header,
)
from edge_agent.uplink.errors import CloudFailed, CloudUnavailable
from shared.plugins import RouteTarget
from shared.reasons import RouteReason, Tier
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams, TokenPiece
from shared.telemetry import GenAiCall, operation_for

if TYPE_CHECKING:
    from edge_agent.api.app import AgentState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Job:
    """One completion request, the same shape for chat and plain prompts."""

    model: str
    kind: Literal["chat", "completion"]
    messages: list[dict[str, Any]] | None
    prompt_text: str | None
    max_tokens: int | None
    params: SamplingParams
    stream: bool
    fmt: CompletionFormat
    echo: str = ""


def _tier_header(request: Request) -> str | None:
    try:
        tier = parse_tier_header(request.headers.get("x-agl-tier"))
    except ValueError as exc:
        raise ApiError(400, str(exc), param="x-agl-tier") from None
    return None if tier is None else tier.value


def _local_runtime(state: AgentState, model: str) -> tuple[str, GgufRuntime]:
    """The local model that serves (or stands in for) ``model``."""
    if model not in state.registry.models and model in state.settings.router.cloud_aliases:
        model = state.registry.main_id  # a cloud alias: the main model counts tokens and falls back
    served = state.registry.get(model)
    if not isinstance(served.runtime, GgufRuntime):
        raise ApiError(
            400,
            f"model {model!r} is an ONNX {served.spec.task} model; use /v1/classify or /v1/embeddings",
            param="model",
            code="wrong_model_type",
        )
    return served.id, served.runtime


def _sampling(
    req: ChatCompletionRequest | CompletionRequest,
    max_tokens: int | None,
    logprobs: bool,
    top_logprobs: int,
) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens or 0,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop_list(),
        seed=req.seed,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streamed or not."""
    state: AgentState = request.app.state.agent
    req = parse_body(
        ChatCompletionRequest, await read_json(request, max_bytes=state.settings.max_body_bytes)
    )
    max_tokens = req.max_completion_tokens or req.max_tokens
    job = Job(
        model=req.model,
        kind="chat",
        messages=[{"role": m.role, "content": m.text()} for m in req.messages],
        prompt_text=None,
        max_tokens=max_tokens,
        params=_sampling(req, max_tokens, req.logprobs, req.top_logprobs or 0),
        stream=req.stream,
        fmt=CompletionFormat(
            model=req.model,
            chat=True,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            logprobs=req.logprobs,
        ),
    )
    return await _dispatch(state, request, job)


async def completions(request: Request) -> Response:
    """OpenAI (legacy) text completions, streamed or not."""
    state: AgentState = request.app.state.agent
    req = parse_body(
        CompletionRequest, await read_json(request, max_bytes=state.settings.max_body_bytes)
    )
    max_tokens = req.max_tokens if req.max_tokens is not None else 16
    job = Job(
        model=req.model,
        kind="completion",
        messages=None,
        prompt_text=req.prompt_text(),
        max_tokens=max_tokens,
        params=_sampling(req, max_tokens, req.logprobs is not None, req.logprobs or 0),
        stream=req.stream,
        fmt=CompletionFormat(
            model=req.model,
            chat=False,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            logprobs=req.logprobs is not None,
        ),
        echo=req.prompt_text() if req.echo else "",
    )
    return await _dispatch(state, request, job)


async def _dispatch(state: AgentState, request: Request, job: Job) -> Response:
    tier_header = _tier_header(request)
    local_id, runtime = _local_runtime(state, job.model)
    filtered = await filter_request(
        state, model=job.model, messages=job.messages, prompt_text=job.prompt_text
    )
    job = replace(job, messages=filtered.messages, prompt_text=filtered.prompt_text)
    if filtered.chain is not None and filtered.chain.has_response_hooks:
        job.fmt.text_filter = ResponseFilter(filtered.chain)
    prompt = (
        runtime.prepare_chat(job.messages)
        if job.messages is not None
        else runtime.prepare_text(job.prompt_text or "")
    )
    uplink = state.uplink
    with state.telemetry.tracer.start_as_current_span("agl.route"):
        decision = _decide(state, job, tier_header, local_id, runtime, prompt, filtered.route)
    if not decision.cascade:
        state.record_decision(decision)  # a cascade is recorded once it has judged
    if decision.tier == Tier.CLOUD:
        answer = await _try_cloud(
            state,
            request,
            job,
            decision.cloud_model or cloud_model_for(job.model, state.settings.router),
            decision.reason,
        )
        if answer is not None:
            return answer
        decision = replace(decision, tier=Tier.EDGE, reason=RouteReason.FALLBACK, cascade=False)
        state.record_decision(decision)
    runtime.check_fits(prompt, job.max_tokens)
    if decision.cascade and uplink is not None:
        return await _cascade(state, request, job, local_id, prompt)
    return await _local(state, job, local_id, prompt, decision.reason)


def _decide(
    state: AgentState,
    job: Job,
    tier_header: str | None,
    local_id: str,
    runtime: GgufRuntime,
    prompt: PreparedPrompt,
    plugin_route: RouteTarget | None,
) -> RouteDecision:
    uplink = state.uplink
    decision = decide(
        RouteInput(
            prompt_tokens=len(prompt.tokens),
            model=job.model,
            tier_header=tier_header,
            plugin_route=plugin_route,
            expected_wait_s=state.scheduler_for(local_id).expected_wait_s(),
            cloud_available=uplink is not None and uplink.available(),
        ),
        state.settings.router,
    )
    fits = len(prompt.tokens) + (job.max_tokens or 1) <= runtime.n_ctx
    if (
        decision.tier == Tier.EDGE
        and not fits
        and decision.reason != RouteReason.LOCAL_ONLY
        and uplink is not None
        and uplink.available()
    ):
        decision = RouteDecision(
            tier=Tier.CLOUD,
            reason=RouteReason.LOCAL_ERROR,
            cascade=False,
            cloud_model=decision.cloud_model or cloud_model_for(job.model, state.settings.router),
            rule=None,
            detail=f"the prompt ({len(prompt.tokens)} tokens) does not fit the local context ({runtime.n_ctx})",
        )
    note_decision(decision)
    return decision


def _params_for(job: Job, runtime_room: int, *, force_logprobs: bool = False) -> SamplingParams:
    wanted = job.max_tokens if job.max_tokens is not None else runtime_room
    params = replace(job.params, max_tokens=wanted)
    if force_logprobs and not params.logprobs:
        params = replace(params, logprobs=True, top_logprobs=0)
    return params


async def _local(
    state: AgentState, job: Job, model_id: str, prompt: PreparedPrompt, reason: RouteReason
) -> Response:
    runtime = state.registry.models[model_id].runtime
    assert isinstance(runtime, GgufRuntime)
    params = _params_for(job, runtime.n_ctx - len(prompt.tokens))
    deadline = time.monotonic() + state.settings.request_timeout_s
    handle = state.scheduler_for(model_id).submit(prompt, params, wake_each=job.stream)
    call = _local_call(state, job, params)
    headers = state.route_headers(Tier.EDGE, reason)
    if job.stream:
        return StreamingResponse(
            local_sse(state, handle, job.fmt, model_id, deadline, echo=job.echo, call=call),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    pieces, end = await collect(state, handle, model_id, deadline, call=call)
    return json_response(job.fmt.full(pieces, end, prefix=job.echo), headers=headers)


def _local_call(state: AgentState, job: Job, params: SamplingParams) -> GenAiCall:
    """The span and GenAI metrics of a local generation (ended when the generation ends)."""
    return GenAiCall.start(
        state.metrics.genai,
        operation_for(job.kind),
        request_model=job.model,
        tier=Tier.EDGE.value,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
    )


def _cloud_job(job: Job, cloud_model: str) -> CloudJob:
    return CloudJob(
        model=cloud_model,
        kind=job.kind,
        messages=job.messages,
        prompt=job.prompt_text,
        params=replace(job.params, max_tokens=job.max_tokens or 256),
    )


async def _try_cloud(
    state: AgentState, request: Request, job: Job, cloud_model: str, reason: RouteReason
) -> Response | None:
    """The hub's answer, or None when it could not answer before anything reached the client."""
    uplink = state.uplink
    if uplink is None:
        return None
    headers = state.route_headers(Tier.CLOUD, reason)
    state.metrics.genai.escalation(str(reason))
    cloud_job = _cloud_job(job, cloud_model)
    # A CLIENT span: the uplink injects its context into the NATS headers (traceparent).
    call = GenAiCall.start(
        state.metrics.genai,
        operation_for(job.kind),
        request_model=cloud_model,
        tier=Tier.CLOUD.value,
        kind=SpanKind.CLIENT,
        max_tokens=cloud_job.params.max_tokens,
        temperature=cloud_job.params.temperature,
    )
    if call.span.is_recording():
        call.span.set_attributes(
            {"agl.route.reason": str(reason), "messaging.system": "nats", "agl.escalation": True}
        )
    try:
        if job.stream:
            primed = await open_cloud_stream(state, uplink, cloud_job, call=call)
            return StreamingResponse(
                cloud_sse(state, primed, job.fmt, cloud_model, call=call),
                media_type="text/event-stream",
                headers={**SSE_HEADERS, **headers},
            )
        body = await cloud_answer(state, uplink, cloud_job, job.fmt, call=call)
        return json_response(body, headers=headers)
    except (CloudUnavailable, CloudFailed) as exc:
        call.fail(str(getattr(exc, "reason", None) or getattr(exc, "code", "failed")), str(exc))
        state.note_cloud_failure(exc)
        return None
    except BaseException:
        call.fail("error")
        raise


async def _cascade(
    state: AgentState, request: Request, job: Job, model_id: str, prompt: PreparedPrompt
) -> Response:
    """Generate locally with log-probabilities, then keep the answer or escalate it."""
    cfg = state.settings.router.cascade
    runtime = state.registry.models[model_id].runtime
    assert isinstance(runtime, GgufRuntime)
    params = _params_for(job, runtime.n_ctx - len(prompt.tokens), force_logprobs=True)
    deadline = time.monotonic() + state.settings.request_timeout_s
    handle = state.scheduler_for(model_id).submit(prompt, params, wake_each=job.stream)
    call = _local_call(state, job, params)
    if job.stream:
        try:
            held = await first_tokens(handle, cfg.first_k, deadline)
        except BaseException:
            call.fail("error")
            raise
        logprobs = [e.logprob for e in held if isinstance(e, TokenPiece) and e.logprob is not None]
    else:
        pieces, end = await collect(state, handle, model_id, deadline, call=call)
        logprobs = [p.logprob for p in pieces if p.logprob is not None]
    verdict = judge(Confidence.from_logprobs(logprobs), cfg)
    state.record_confidence(verdict)
    note_verdict(state.telemetry.tracer, verdict)
    if verdict.escalate:
        answer = await _try_cloud(
            state,
            request,
            job,
            cloud_model_for(job.model, state.settings.router),
            RouteReason.CONFIDENCE,
        )
        if answer is not None:
            handle.cancel()
            call.abandon("escalated")
            state.record_decision(
                RouteDecision(tier=Tier.CLOUD, reason=RouteReason.CONFIDENCE, detail=verdict.detail)
            )
            return answer
        reason = RouteReason.FALLBACK
    else:
        reason = RouteReason.DEFAULT
    state.record_decision(RouteDecision(tier=Tier.EDGE, reason=reason, detail=verdict.detail))
    headers = state.route_headers(Tier.EDGE, reason)
    if job.stream:
        return StreamingResponse(
            local_sse(
                state, handle, job.fmt, model_id, deadline, echo=job.echo, held=held, call=call
            ),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    return json_response(job.fmt.full(pieces, end, prefix=job.echo), headers=headers)


__all__ = ["GenerationEnd", "chat_completions", "completions"]
