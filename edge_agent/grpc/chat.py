"""``agl.v1.Chat``: the OpenAI chat shape over gRPC, on the same path as REST.

    request → ChatCompletionRequest (the REST validation) → Job → run_job → events → messages

``Stream`` sends one ``ChatChunk`` per batch of token pieces, then a last chunk with
``finish_reason`` and usage; ``Complete`` sends the whole answer. ``x-agl-tier`` request metadata
forces a tier as the REST header does; ``x-agl-tier``/``x-agl-reason`` come back as initial
metadata. The client's deadline bounds the call, and a call that ends early (cancel, deadline)
closes the events, which cancels the generation as a dropped SSE client does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from edge_agent.api.answer import JobAnswer, run_job
from edge_agent.api.formatter import collect, cut_short, no_final_event
from edge_agent.api.http_io import parse_body
from edge_agent.api.jobs import Job, chat_job
from edge_agent.api.schemas import ChatCompletionRequest
from edge_agent.api.state import AgentState
from edge_agent.errors import ApiError
from edge_agent.execute.events import Event, Failure, GenerationEnd, Pieces, replay
from edge_agent.grpc.errors import Context, abort, api_errors
from edge_agent.router.decide import parse_tier_header
from shared.proto.agl.v1 import chat_pb2 as pb
from shared.proto.agl.v1 import chat_pb2_grpc as pb_grpc
from shared.runtimes.types import TokenPiece

__all__ = ["ChatService", "chat_request_job"]


def chat_request_job(request: pb.ChatRequest, *, stream: bool) -> Job:
    """The job of a ``ChatRequest``, validated exactly as the REST body is."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": stream,
        "logprobs": request.logprobs,
    }
    if request.HasField("max_tokens"):
        body["max_tokens"] = request.max_tokens
    if request.HasField("temperature"):
        body["temperature"] = _float32(request.temperature)
    if request.HasField("top_p"):
        body["top_p"] = _float32(request.top_p)
    if request.stop:
        body["stop"] = list(request.stop)
    if request.HasField("seed"):
        body["seed"] = request.seed
    if request.top_logprobs:
        body["top_logprobs"] = request.top_logprobs
    if stream:
        body["stream_options"] = {"include_usage": True}
    return chat_job(parse_body(ChatCompletionRequest, body))


class ChatService(pb_grpc.ChatServicer):
    """``agl.v1.Chat`` on the agent's shared state."""

    def __init__(self, state: AgentState) -> None:
        self._state = state

    async def Complete(self, request: pb.ChatRequest, context: Context) -> pb.ChatResponse:
        """The whole answer in one message."""
        deadline = _deadline(context)
        async with api_errors(self._state, context):
            started, first = await self._start(request, context, stream=False, deadline=deadline)
            try:
                await context.send_initial_metadata(tuple(started.decision.headers().items()))
                async with _bounded(deadline):
                    held = [first] if first is not None else []
                    pieces, end = await collect(replay(held, started.events))
            finally:
                await _close(started.events)  # a no-op once collect has read the end
            return pb.ChatResponse(
                id=started.format.id,
                model=started.format.model,
                content="".join(p.text for p in pieces),
                pieces=_pieces(pieces) if started.format.logprobs else [],
                finish_reason=end.finish_reason,
                usage=_usage(end),
            )

    async def Stream(
        self, request: pb.ChatRequest, context: Context
    ) -> AsyncIterator[pb.ChatChunk]:
        """The answer as it is generated; a failure mid-stream ends the call with its status."""
        deadline = _deadline(context)
        async with api_errors(self._state, context):
            started, event = await self._start(request, context, stream=True, deadline=deadline)
        events = started.events
        rid, model = started.format.id, started.format.model
        try:
            await context.send_initial_metadata(tuple(started.decision.headers().items()))
            while True:
                if isinstance(event, Pieces):
                    if event.pieces:
                        yield pb.ChatChunk(id=rid, model=model, pieces=_pieces(event.pieces))
                elif isinstance(event, GenerationEnd):
                    if event.finish_reason == "cancelled":
                        await abort(context, cut_short())
                    yield pb.ChatChunk(
                        id=rid, model=model, finish_reason=event.finish_reason, usage=_usage(event)
                    )
                    return
                elif isinstance(event, Failure):
                    await abort(
                        context,
                        ApiError(event.status, event.message, type=event.type, code=event.code),
                    )
                elif event is None:
                    await abort(context, no_final_event())
                async with api_errors(self._state, context), _bounded(deadline):
                    event = await anext(events, None)
        finally:
            # A cancelled call or a deadline lands here: closing the events cancels generation.
            await _close(events)

    async def _start(
        self, request: pb.ChatRequest, context: Context, *, stream: bool, deadline: float | None
    ) -> tuple[JobAnswer, Event | None]:
        """Route and start the job, and read its first event.

        Reading it starts the events' generators, so that closing them from here on cancels the
        generation (a generator closed before it started runs no cleanup).
        """
        tier_raw = _metadata(context).get("x-agl-tier")
        job = chat_request_job(request, stream=stream)
        try:
            tier = parse_tier_header(tier_raw)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="x-agl-tier") from None
        async with _bounded(deadline):
            started = await run_job(self._state, job, tier_header=tier)
        try:
            async with _bounded(deadline):
                first = await anext(started.events, None)
        except BaseException:
            await _close(started.events)
            raise
        return started, first


async def _close(events: AsyncIterator[Event]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _metadata(context: Context) -> dict[str, str]:
    found = context.invocation_metadata() or ()
    return {k.lower(): v for k, v in found if isinstance(v, str)}


def _deadline(context: Context) -> float | None:
    """The client's deadline on the loop's clock, or None without one."""
    left = cast(float | None, context.time_remaining())
    return None if left is None else asyncio.get_running_loop().time() + left


@contextlib.asynccontextmanager
async def _bounded(deadline: float | None) -> AsyncIterator[None]:
    """Wait no longer than the client's deadline; past it, a 504 as REST's timeout."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise ApiError(
            504,
            "the client's deadline ran out before the answer was complete",
            type="server_error",
            code="timeout",
        ) from None


def _pieces(pieces: Sequence[TokenPiece]) -> list[pb.Piece]:
    return [
        pb.Piece(
            text=p.text,
            logprob=p.logprob,
            top_logprobs=[pb.TopLogprob(token=t.token, logprob=t.logprob) for t in p.top_logprobs],
        )
        if p.logprob is not None
        else pb.Piece(text=p.text)
        for p in pieces
    ]


def _usage(end: GenerationEnd) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=end.prompt_tokens,
        completion_tokens=end.completion_tokens,
        total_tokens=end.prompt_tokens + end.completion_tokens,
    )


def _float32(value: float) -> float:
    # proto floats are 32-bit: 0.7 arrives as 0.699999988; the REST body would say 0.7.
    return float(f"{value:.7g}")
