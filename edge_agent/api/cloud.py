"""Answering from the hub: build the NATS request, render its answer as OpenAI JSON or SSE."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from edge_agent.api.openai_format import CompletionFormat, error_event
from edge_agent.uplink.errors import UplinkError
from shared.protocol import ChatTurn, EndMessage, InferParams, InferRequest
from shared.runtimes.types import FinishReason, GenerationEnd, SamplingParams, TokenPiece
from shared.telemetry import GenAiCall

if TYPE_CHECKING:
    from edge_agent.api.app import AgentState
    from edge_agent.uplink.client import Uplink

log = logging.getLogger("edge_agent.cloud")

_ROLES = {"developer": "system"}


@dataclass(frozen=True)
class CloudJob:
    """What to ask the hub."""

    model: str
    kind: Literal["chat", "completion"]
    messages: list[dict[str, Any]] | None
    prompt: str | None
    params: SamplingParams


def infer_request(job: CloudJob, *, device: str, stream: bool) -> InferRequest:
    """The wire request for ``job``."""
    turns = (
        [
            ChatTurn(role=_ROLES.get(m["role"], m["role"]), content=m["content"])
            for m in job.messages
        ]
        if job.messages is not None
        else None
    )
    p = job.params
    return InferRequest(
        id=uuid.uuid4().hex,
        device=device,
        model=job.model,
        kind=job.kind,
        messages=turns,
        prompt=job.prompt,
        params=InferParams(
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=list(p.stop),
            seed=p.seed,
        ),
        stream=stream,
    )


def _finish(call: GenAiCall | None, model: str, end: GenerationEnd) -> None:
    if call is not None:
        call.finish(
            response_model=model,
            input_tokens=end.prompt_tokens,
            output_tokens=end.completion_tokens,
            finish_reason=end.finish_reason,
        )


def _end(msg: EndMessage | Any) -> GenerationEnd:
    reason: FinishReason = "length" if msg.finish_reason == "length" else "stop"
    return GenerationEnd(
        finish_reason=reason,
        prompt_tokens=msg.usage.prompt_tokens,
        completion_tokens=msg.usage.completion_tokens,
    )


async def cloud_answer(
    state: AgentState,
    uplink: Uplink,
    job: CloudJob,
    fmt: CompletionFormat,
    *,
    call: GenAiCall | None = None,
) -> dict[str, Any]:
    """The whole answer from the hub as an OpenAI response body (raises CloudUnavailable/CloudFailed).

    The NATS request carries the trace context of ``call``'s span (else the current one);
    ``call`` is finished here on success, the caller ends it on failure.
    """
    req = infer_request(job, device=state.settings.device_id, stream=False)
    with call.current() if call is not None else contextlib.nullcontext():
        result = await uplink.complete(req, timeout=state.settings.hub.request_timeout_s)
    end = _end(result)
    state.count_tokens(f"cloud:{job.model}", end)
    _finish(call, result.model or job.model, end)
    return fmt.full([TokenPiece(text=result.text, token_id=-1)], end)


@dataclass
class PrimedCloudStream:
    """A hub stream whose first message has arrived (so falling back is no longer silent)."""

    first: str | EndMessage
    rest: AsyncGenerator[str | EndMessage, None]


async def open_cloud_stream(
    state: AgentState, uplink: Uplink, job: CloudJob, *, call: GenAiCall | None = None
) -> PrimedCloudStream:
    """Start streaming from the hub and wait for its first message.

    Raises CloudUnavailable/CloudFailed when nothing arrived, so the caller can still
    answer locally with reason ``fallback``.
    """
    hub = state.settings.hub
    req = infer_request(job, device=state.settings.device_id, stream=True)
    stream = uplink.stream(
        req,
        timeout=hub.chunk_timeout_s,
        first_chunk_timeout=hub.first_chunk_timeout_s,
    )
    try:
        # The request is published on the first step: inject ``call``'s span as its parent.
        with call.current() if call is not None else contextlib.nullcontext():
            first = await anext(stream)
        if call is not None:
            call.first_token()
    except BaseException:
        with contextlib.suppress(Exception):
            await stream.aclose()
        raise
    return PrimedCloudStream(first=first, rest=stream)


async def cloud_sse(
    state: AgentState,
    primed: PrimedCloudStream,
    fmt: CompletionFormat,
    model: str,
    *,
    call: GenAiCall | None = None,
) -> AsyncIterator[bytes]:
    """SSE bytes for a primed hub stream; a failure mid-stream ends it with an error event.

    ``call`` (the escalation's span and metrics) ends when the stream ends.
    """
    try:
        opening = fmt.opening()
        if opening:
            yield opening
        item: str | EndMessage | None = primed.first
        while item is not None:
            if isinstance(item, EndMessage):
                end = _end(item)
                state.count_tokens(f"cloud:{model}", end)
                _finish(call, model, end)
                yield fmt.closing(end)
                return
            if item and (chunk := fmt.pieces([TokenPiece(text=item, token_id=-1)])):
                yield chunk
            item = await anext(primed.rest, None)
        yield error_event("the hub's stream ended without a final message", code="cloud_failed")
    except UplinkError as exc:
        log.warning("cloud stream failed mid-answer: %s", exc)
        if call is not None:
            call.fail("cloud_failed", str(exc))
        yield error_event(f"the hub failed mid-answer: {exc}", code="cloud_failed")
    finally:
        if call is not None:
            call.fail("incomplete")  # no-op when the stream finished
        with contextlib.suppress(Exception):
            await primed.rest.aclose()
