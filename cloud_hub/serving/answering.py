"""Answering one accepted request: run its back-end, send the replies, trace it.

:func:`answer` runs inside the request's task. It opens the hub's GenAI span (a child of
the edge's span, whose ``traceparent`` came in the NATS headers), sends a result or a chunk
stream, and turns every failure into one error reply: the hub's deadline (``timeout``),
bad input (``bad_request``), a failing back-end (``backend_error``), a bug (``internal``)
or cancellation of the task (``shutting_down``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from nats.micro.request import Request
from opentelemetry.trace import SpanKind

from cloud_hub.backends import Backend, RequestContext
from cloud_hub.errors import HubError
from cloud_hub.serving.pacing import coalesced
from cloud_hub.serving.replies import (
    ErrorStats,
    StreamFramer,
    piece,
    result_message,
    send,
    send_error,
    send_result,
)
from shared.errors import AglError, InvalidInput, UnsupportedOperation
from shared.protocol import ErrorCode, ErrorMessage, InferRequest
from shared.runtimes.types import GenerationEnd, TokenPiece
from shared.telemetry import GenAiCall, Instruments, extract_context, operation_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """What the hub did with one request (kept in ``HubService.finished``)."""

    id: str
    model: str
    finish_reason: str
    completion_tokens: int


#: The end assumed when a back-end stops without a :class:`GenerationEnd`.
_NO_END = GenerationEnd("stop", 0, 0)


async def answer(
    request: Request,
    req: InferRequest,
    backend: Backend,
    ctx: RequestContext,
    *,
    metrics: Instruments,
    timeout_s: float,
    max_payload: int,
    stats: ErrorStats | None = None,
    stream_interval_s: float = 0.0,
) -> GenerationEnd | None:
    """Serve ``req`` and reply; return how it ended, or ``None`` if an error reply was sent.

    Cancels ``ctx`` when the deadline passes or the task is cancelled (re-raised). A stream's
    tokens go out at most every ``stream_interval_s`` when the back-end has ``coalesce_stream``
    (0: one chunk per token).
    """
    call = _start_call(metrics, request, req, ctx)
    try:
        with call.current(), metrics.activate():
            return await _answer_traced(
                request, req, backend, ctx, call, timeout_s, max_payload, stats, stream_interval_s
            )
    finally:
        call.fail("internal")  # no-op unless _answer_traced ended without a verdict


def _start_call(
    metrics: Instruments, request: Request, req: InferRequest, ctx: RequestContext
) -> GenAiCall:
    call = GenAiCall.start(
        metrics,
        operation_for(req.kind),
        request_model=req.model,
        tier="cloud",
        kind=SpanKind.SERVER,
        parent=extract_context(ctx.headers),
        max_tokens=req.params.max_tokens,
        temperature=req.params.temperature
        if "temperature" in req.params.model_fields_set
        else None,
        response_id=req.id,
    )
    if call.span.is_recording():
        call.span.set_attributes(
            {
                "messaging.system": "nats",
                "messaging.destination.name": request.subject,
                "agl.device.id": req.device,
                "agl.request.id": req.id,
                "agl.stream": req.stream,
            }
        )
    return call


async def _answer_traced(
    request: Request,
    req: InferRequest,
    backend: Backend,
    ctx: RequestContext,
    call: GenAiCall,
    timeout_s: float,
    max_payload: int,
    stats: ErrorStats | None,
    stream_interval_s: float = 0.0,
) -> GenerationEnd | None:
    async def refuse(code: ErrorCode, message: str) -> None:
        await send_error(request, ErrorMessage(id=req.id, code=code, message=message), stats=stats)

    try:
        async with asyncio.timeout(timeout_s):
            if req.stream:
                # Coalesced where a back-end asks for it (token streams: GGUF).
                interval = stream_interval_s if getattr(backend, "coalesce_stream", False) else 0
                end = await _stream(request, req, backend, ctx, call, interval)
            else:
                end = await _complete(request, req, backend, ctx, call, max_payload, stats)
    except TimeoutError:
        call.fail("timeout")
        ctx.cancelled.set()
        await refuse(
            "timeout",
            f"the hub's deadline of {timeout_s:g} s passed; "
            "lower max_tokens or raise request_timeout_s",
        )
    except (InvalidInput, UnsupportedOperation) as exc:
        call.fail("bad_request", str(exc))
        await refuse("bad_request", str(exc))
    except (AglError, HubError) as exc:
        call.fail("backend_error", str(exc))
        await refuse("backend_error", str(exc))
    except asyncio.CancelledError:
        call.fail("shutting_down")
        ctx.cancelled.set()
        with contextlib.suppress(Exception):
            await refuse("shutting_down", "the hub stopped mid-request")
        raise
    except Exception as exc:
        call.fail("internal", repr(exc))
        log.exception("request %s failed", req.id)
        await refuse("internal", f"hub bug: {exc!r}; see the hub log")
    else:
        call.finish(
            response_model=req.model,
            input_tokens=end.prompt_tokens,
            output_tokens=end.completion_tokens,
            finish_reason=end.finish_reason,
        )
        return end
    return None


async def _complete(
    request: Request,
    req: InferRequest,
    backend: Backend,
    ctx: RequestContext,
    call: GenAiCall,
    max_payload: int,
    stats: ErrorStats | None,
) -> GenerationEnd:
    pieces: list[TokenPiece] = []
    end = _NO_END
    async with contextlib.aclosing(backend.run(req, ctx)) as events:
        async for event in events:
            if isinstance(event, GenerationEnd):
                end = event
            else:
                if not pieces:
                    call.first_token()
                pieces.append(piece(event))
    await send_result(
        request, result_message(req, pieces, end), max_payload=max_payload, stats=stats
    )
    return end


async def _stream(
    request: Request,
    req: InferRequest,
    backend: Backend,
    ctx: RequestContext,
    call: GenAiCall,
    interval_s: float = 0.0,
) -> GenerationEnd:
    framer = StreamFramer(req.id)
    end = _NO_END
    async with contextlib.aclosing(backend.run(req, ctx)) as events:
        async for burst in coalesced(events, interval_s):
            if isinstance(burst[-1], GenerationEnd):
                end, burst = burst[-1], burst[:-1]
            if chunk := framer.feed_many(burst):  # type: ignore[arg-type]
                if chunk.seq == 0:
                    call.first_token()
                await send(request, chunk)
    for msg in framer.end(end):
        await send(request, msg)
    return end
