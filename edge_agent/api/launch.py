"""Starting a job's executors: the local run, and the escalation to the hub.

run = local_run(state, job, "smollm2", runtime, prompt, logprobs=False)
events = await escalate(state, job, decision)   # None: the hub could not answer
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from opentelemetry.trace import SpanKind

from edge_agent.api.jobs import Job
from edge_agent.api.state import AgentState
from edge_agent.execute.cloud import cloud_events, infer_request
from edge_agent.execute.events import Event
from edge_agent.execute.local import LocalRun
from edge_agent.router.decide import RouteDecision, cloud_model_for
from edge_agent.uplink.errors import CloudFailed, CloudUnavailable
from shared.protocol import infer_subject
from shared.reasons import Tier
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import PreparedPrompt
from shared.telemetry import GenAiCall, operation_for

__all__ = ["escalate", "local_run"]


def local_run(
    state: AgentState,
    job: Job,
    model_id: str,
    runtime: GgufRuntime,
    prompt: PreparedPrompt,
    *,
    logprobs: bool,
) -> LocalRun:
    params = job.local_params(runtime.n_ctx - len(prompt.tokens), logprobs=logprobs)
    scheduler = state.scheduler_for(model_id, runtime=runtime)  # a live model swap: same pair
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
            temperature=job.asked_temperature,
            response_id=job.response_id,
        ),
        on_close=lambda: depth.set(scheduler.queue_depth),
    )


async def escalate(
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
        tools=job.tools,
    )
    # A CLIENT span: the uplink injects its context into the NATS headers (traceparent).
    host, port = uplink.server_address() or ("", 0)
    call = GenAiCall.start(
        state.metrics.genai,
        operation_for(job.kind),
        request_model=cloud_model,
        tier=Tier.CLOUD.value,
        kind=SpanKind.CLIENT,
        max_tokens=req.params.max_tokens,
        temperature=job.asked_temperature,
        server_address=host,
        server_port=port,
        response_id=req.id,
    )
    if call.span.is_recording():
        call.span.set_attributes(
            {
                "agl.route.reason": reason,
                "messaging.system": "nats",
                "messaging.destination.name": infer_subject(uplink.device, cloud_model),
                "agl.escalation": True,
            }
        )
    try:
        return await cloud_events(uplink, req, hub=state.settings.hub, call=call)
    except (CloudUnavailable, CloudFailed) as exc:
        call.fail(str(getattr(exc, "reason", None) or getattr(exc, "code", "failed")), str(exc))
        state.note_cloud_failure(exc)
        return None
    except BaseException:
        call.fail("error")
        raise
