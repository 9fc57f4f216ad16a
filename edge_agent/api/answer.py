"""Answering one completion job: the request path, in one direction.

    job → on_request plugins → prompt (template + tokens, off the loop) → router decision
        → executor (local | cloud | cascade) → events → on_response plugins → formatter

The router (``edge_agent.router``) decides every tier and reason, ``fallback`` and
``local_error`` included; this module only gathers the facts it needs and carries the decision
out. The final decision is counted once and answered in ``x-agl-tier``/``x-agl-reason``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from edge_agent.api.capability import capability_facts, unmet
from edge_agent.api.errors import api_error_for
from edge_agent.api.formatter import CompletionFormat, json_answer, sse_answer
from edge_agent.api.http_io import json_response
from edge_agent.api.jobs import Job
from edge_agent.api.launch import escalate, local_run
from edge_agent.api.middleware import watch_events
from edge_agent.api.plugin_filters import filter_events, filter_request
from edge_agent.api.prompt import check_size, local_runtime, overflow, prepare, text_chars
from edge_agent.api.route_record import RouteRecord
from edge_agent.api.state import AgentState
from edge_agent.api.tracing import note_judgement
from edge_agent.errors import ApiError
from edge_agent.execute.cascade import run_cascade
from edge_agent.execute.events import Event, paced
from edge_agent.router.decide import (
    RouteDecision,
    RouteInput,
    decide,
    fallback,
    parse_tier_header,
)
from shared.errors import AglError
from shared.reasons import Tier
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import PreparedPrompt

__all__ = ["JobAnswer", "answer", "run_job"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class JobAnswer:
    """A routed, running job: the final decision, the answer's events and how to write them."""

    decision: RouteDecision
    events: AsyncIterator[Event]
    format: CompletionFormat


async def run_job(state: AgentState, job: Job, *, tier_header: Tier | None) -> JobAnswer:
    """Route ``job`` and start it: the transport-free core that REST and gRPC share.

    Raises :class:`ApiError` (with the real path's ``x-agl-*`` headers when a decision was made);
    the returned events already went through the ``on_response`` plugins.
    """
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
    route = RouteRecord(state, state.telemetry.tracer.start_span("agl.route"))
    try:
        route.decision = decide(
            RouteInput(
                prompt_tokens=prompt_tokens,
                model=job.model,
                tier_header=None if tier_header is None else tier_header.value,
                plugin_route=filtered.route,
                expected_wait_s=state.scheduler_for(local_id).expected_wait_s(),
                cloud_available=uplink is not None and uplink.available(),
                fits_locally=prompt is not None
                and prompt_tokens + (job.max_tokens or 1) <= runtime.n_ctx,
                **capability_facts(state, job, local_id),
            ),
            state.settings.router,
        )
        if route.decision.unmet:
            raise unmet(route.decision, local_id)
        events = await _carry_out(state, job, route, local_id, runtime, prompt, prompt_tokens)
    except AglError as exc:
        raise route.refuse(api_error_for(exc)) from exc
    except ApiError as exc:
        raise route.refuse(exc) from None
    finally:
        route.close()
    decision = route.decision
    # A cloud answer names the hub model that made it; a local one the name the client used.
    cloud = decision.tier is Tier.CLOUD
    fmt = job.answer_format(model=(decision.cloud_model or job.model) if cloud else job.model)
    events = filter_events(events, filtered.chain, stream=job.stream, pool=state.plugin_workers)
    if job.stream:
        events = paced(events, state.settings.stream_interval_ms / 1000)
    return JobAnswer(decision, events, fmt)


async def answer(state: AgentState, request: Request, job: Job) -> Response:
    """Route ``job``, run it, and render the answer as JSON or SSE."""
    try:
        tier_header = parse_tier_header(request.headers.get("x-agl-tier"))
    except ValueError as exc:
        raise ApiError(400, str(exc), param="x-agl-tier") from None
    started = await run_job(state, job, tier_header=tier_header)
    events = watch_events(request.scope, started.events)  # access log: model, TTFT, usage
    headers = {**started.decision.headers(), "x-request-id": started.format.id}
    if job.stream:
        return StreamingResponse(
            sse_answer(events, started.format),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    try:
        body = await json_answer(events, started.format)
    except ApiError as exc:  # e.g. a malformed tool call: still say where it was answered
        exc.headers = {**headers, **exc.headers}
        raise
    return json_response(body, headers=headers)


async def _carry_out(
    state: AgentState,
    job: Job,
    route: RouteRecord,
    local_id: str,
    runtime: GgufRuntime,
    prompt: PreparedPrompt | None,
    prompt_tokens: int,
) -> AsyncIterator[Event]:
    """Run the decision: the hub, or the local model (falling back, or cascading)."""
    decision = route.decision
    if decision.tier is Tier.CLOUD:
        events = await escalate(state, job, decision)
        if events is not None:
            route.settle(decision)
            return events
        decision = route.decision = fallback(decision, "escalation failed")
        if decision.unmet:  # the local model may not answer it: no silent downgrade
            raise unmet(decision, local_id, status=503)
    if not decision.cascade:  # final now: counted even if the prompt is refused next
        route.settle(decision)
    if prompt is None:
        raise overflow(prompt_tokens, runtime.n_ctx)
    runtime.check_fits(prompt, job.max_tokens)  # 400 context_length_exceeded
    run = local_run(state, job, local_id, runtime, prompt, logprobs=decision.cascade)
    if not decision.cascade:
        return run.events()
    tuner = state.cascade_tuner
    cascade = state.settings.router.cascade
    settled, events, judgement = await run_cascade(
        run,
        decision,
        tuner.cascade(cascade) if tuner is not None else cascade,
        stream=job.stream,
        escalate=lambda chosen: escalate(state, job, chosen),
    )
    state.metrics.cascade_nll.observe(-judgement.score)
    if tuner is not None:
        tuner.observe(judgement.score, escalated=judgement.escalate)
    note_judgement(state.telemetry.tracer, judgement)
    route.settle(settled)
    return events
