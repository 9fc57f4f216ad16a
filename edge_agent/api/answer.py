"""Answering one completion job: the request path, in one direction.

    job → on_request plugins → prompt (template + tokens, off the loop) → router decision
        → executor (local | cloud | cascade) → events → on_response plugins → formatter

The router (``edge_agent.router``) decides every tier and reason, ``fallback`` and
``local_error`` included; this module only gathers the facts it needs and carries the decision
out. The final decision is counted once and answered in ``x-agl-tier``/``x-agl-reason``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from edge_agent.api.formatter import json_answer, sse_answer
from edge_agent.api.http_io import json_response
from edge_agent.api.jobs import Job
from edge_agent.api.plugin_filters import filter_events, filter_request
from edge_agent.api.prompt import check_size, local_runtime, overflow, prepare, text_chars
from edge_agent.api.state import AgentState
from edge_agent.api.tracing import note_decision, note_judgement
from edge_agent.errors import ApiError
from edge_agent.execute.cascade import run_cascade
from edge_agent.execute.cloud import cloud_events, infer_request
from edge_agent.execute.events import Event
from edge_agent.execute.local import LocalRun
from edge_agent.router.decide import (
    RouteDecision,
    RouteInput,
    cloud_model_for,
    decide,
    fallback,
    parse_tier_header,
)
from edge_agent.uplink.errors import CloudFailed, CloudUnavailable
from shared.reasons import Tier
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import PreparedPrompt
from shared.telemetry import GenAiCall, operation_for

__all__ = ["answer"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def answer(state: AgentState, request: Request, job: Job) -> Response:
    """Route ``job``, run it, and render the answer as JSON or SSE."""
    try:
        tier_header = parse_tier_header(request.headers.get("x-agl-tier"))
    except ValueError as exc:
        raise ApiError(400, str(exc), param="x-agl-tier") from None
    check_size(state, job)
    local_id, runtime = local_runtime(state, job.model)
    filtered = await filter_request(
        state, model=job.model, messages=job.messages, prompt_text=job.prompt_text
    )
    job.messages, job.prompt_text = filtered.messages, filtered.prompt_text
    if filtered.model != job.model:  # a plugin chose another model: route that one
        job.model = filtered.model
        local_id, runtime = local_runtime(state, job.model)
    check_size(state, job)
    # A prompt that cannot fit is never tokenised here: its size bounds the work up front.
    chars = text_chars(job)
    prompt = None
    if runtime.surely_too_long(chars):
        prompt_tokens = chars // runtime.max_token_bytes
    else:
        prompt = await prepare(state, runtime, job)
        prompt_tokens = len(prompt.tokens)
    uplink = state.uplink
    with state.telemetry.tracer.start_as_current_span("agl.route"):
        decision = decide(
            RouteInput(
                prompt_tokens=prompt_tokens,
                model=job.model,
                tier_header=None if tier_header is None else tier_header.value,
                plugin_route=filtered.route,
                expected_wait_s=state.scheduler_for(local_id).expected_wait_s(),
                cloud_available=uplink is not None and uplink.available(),
                fits_locally=prompt is not None
                and prompt_tokens + (job.max_tokens or 1) <= runtime.n_ctx,
            ),
            state.settings.router,
        )
        note_decision(decision)
    events: AsyncIterator[Event] | None = None
    if decision.tier is Tier.CLOUD:
        events = await _escalate(state, job, decision)
        if events is None:
            decision = fallback(decision, "escalation failed")
    if events is None:
        if not decision.cascade:  # final now: counted even if the prompt is refused next
            _settled(state, decision)
        if prompt is None:
            raise overflow(prompt_tokens, runtime.n_ctx)
        runtime.check_fits(prompt, job.max_tokens)  # 400 context_length_exceeded
        run = _local_run(state, job, local_id, runtime, prompt, logprobs=decision.cascade)
        if decision.cascade:
            decision, events, judgement = await run_cascade(
                run,
                decision,
                state.settings.router.cascade,
                stream=job.stream,
                escalate=lambda settled: _escalate(state, job, settled),
            )
            state.metrics.cascade_score.observe(judgement.score)
            note_judgement(state.telemetry.tracer, judgement)
            _settled(state, decision)
        else:
            events = run.events()
    else:
        _settled(state, decision)
    # A cloud answer names the hub model that made it; a local one the name the client used.
    cloud = decision.tier is Tier.CLOUD
    fmt = job.answer_format(model=(decision.cloud_model or job.model) if cloud else job.model)
    events = filter_events(events, filtered.chain, stream=job.stream, pool=state.plugin_workers)
    headers = decision.headers()
    if job.stream:
        return StreamingResponse(
            sse_answer(events, fmt),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    return json_response(await json_answer(events, fmt), headers=headers)


def _settled(state: AgentState, decision: RouteDecision) -> None:
    """The final decision: on the request's span and counted, once per request."""
    note_decision(decision)
    state.record_decision(decision)


def _local_run(
    state: AgentState,
    job: Job,
    model_id: str,
    runtime: GgufRuntime,
    prompt: PreparedPrompt,
    *,
    logprobs: bool,
) -> LocalRun:
    params = job.local_params(runtime.n_ctx - len(prompt.tokens), logprobs=logprobs)
    scheduler = state.scheduler_for(model_id)
    handle = scheduler.submit(prompt, params, wake_each=job.stream)
    depth = state.metrics.queue_depth.labels(model_id)
    depth.set(scheduler.queue_depth)
    settings = state.settings
    return LocalRun(
        handle,
        model_id=model_id,
        deadline=time.monotonic() + settings.request_timeout_s,
        timeout_s=settings.request_timeout_s,
        metrics=state.metrics,
        call=GenAiCall.start(
            state.metrics.genai,
            operation_for(job.kind),
            request_model=job.model,
            tier=Tier.EDGE.value,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
        ),
        interval_s=settings.stream_interval_ms / 1000 if job.stream else 0.0,
        on_close=lambda: depth.set(scheduler.queue_depth),
    )


async def _escalate(
    state: AgentState, job: Job, decision: RouteDecision
) -> AsyncIterator[Event] | None:
    """The hub's answer as events, or None when it could not answer before anything was sent."""
    uplink = state.uplink
    if uplink is None:
        return None
    cloud_model = decision.cloud_model or cloud_model_for(job.model, state.settings.router)
    reason = str(decision.reason)
    state.metrics.genai.escalation(reason)
    req = infer_request(
        device=state.settings.device_id,
        model=cloud_model,
        kind=job.kind,
        messages=job.messages,
        prompt=job.prompt_text,
        params=job.cloud_params(),
        stream=job.stream,
    )
    # A CLIENT span: the uplink injects its context into the NATS headers (traceparent).
    call = GenAiCall.start(
        state.metrics.genai,
        operation_for(job.kind),
        request_model=cloud_model,
        tier=Tier.CLOUD.value,
        kind=SpanKind.CLIENT,
        max_tokens=req.params.max_tokens,
        temperature=req.params.temperature,
    )
    if call.span.is_recording():
        call.span.set_attributes(
            {"agl.route.reason": reason, "messaging.system": "nats", "agl.escalation": True}
        )
    try:
        return await cloud_events(
            uplink, req, hub=state.settings.hub, metrics=state.metrics, call=call
        )
    except (CloudUnavailable, CloudFailed) as exc:
        call.fail(str(getattr(exc, "reason", None) or getattr(exc, "code", "failed")), str(exc))
        state.note_cloud_failure(exc)
        return None
    except BaseException:
        call.fail("error")
        raise
