"""``/v1/chat/completions`` and ``/v1/completions``: prompt → scheduler → JSON or SSE."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from edge_agent.api.http_io import json_response, parse_body, read_json
from edge_agent.api.openai_format import CompletionFormat, error_event
from edge_agent.api.schemas import ChatCompletionRequest, CompletionRequest
from edge_agent.errors import ApiError
from edge_agent.scheduler import GenerationHandle
from shared.errors import AglError
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams, TokenPiece

if TYPE_CHECKING:
    from edge_agent.api.app import AgentState

log = logging.getLogger("edge_agent.api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _gguf(state: AgentState, model_id: str) -> GgufRuntime:
    model = state.registry.get(model_id)
    if not isinstance(model.runtime, GgufRuntime):
        raise ApiError(
            400,
            f"model {model_id!r} is an ONNX {model.spec.task} model; use /v1/classify or /v1/embeddings",
            param="model",
            code="wrong_model_type",
        )
    return model.runtime


def _params(
    req: ChatCompletionRequest | CompletionRequest,
    *,
    runtime: GgufRuntime,
    prompt: PreparedPrompt,
    max_tokens: int | None,
    logprobs: bool,
    top_logprobs: int,
) -> SamplingParams:
    runtime.check_fits(prompt, max_tokens)
    wanted = max_tokens if max_tokens is not None else runtime.n_ctx - len(prompt.tokens)
    return SamplingParams(
        max_tokens=wanted,
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
    runtime = _gguf(state, req.model)
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    prompt = runtime.prepare_chat(messages)
    params = _params(
        req,
        runtime=runtime,
        prompt=prompt,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs or 0,
    )
    fmt = CompletionFormat(
        model=req.model,
        chat=True,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        logprobs=req.logprobs,
    )
    return await _respond(state, request, req.model, prompt, params, fmt, stream=req.stream)


async def completions(request: Request) -> Response:
    """OpenAI (legacy) text completions, streamed or not."""
    state: AgentState = request.app.state.agent
    req = parse_body(
        CompletionRequest, await read_json(request, max_bytes=state.settings.max_body_bytes)
    )
    runtime = _gguf(state, req.model)
    prompt = runtime.prepare_text(req.prompt_text())
    params = _params(
        req,
        runtime=runtime,
        prompt=prompt,
        max_tokens=req.max_tokens if req.max_tokens is not None else 16,
        logprobs=req.logprobs is not None,
        top_logprobs=req.logprobs or 0,
    )
    fmt = CompletionFormat(
        model=req.model,
        chat=False,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        logprobs=req.logprobs is not None,
    )
    echo = req.prompt_text() if req.echo else ""
    return await _respond(
        state, request, req.model, prompt, params, fmt, stream=req.stream, echo=echo
    )


async def _respond(
    state: AgentState,
    request: Request,
    model_id: str,
    prompt: PreparedPrompt,
    params: SamplingParams,
    fmt: CompletionFormat,
    *,
    stream: bool,
    echo: str = "",
) -> Response:
    scheduler = state.scheduler_for(model_id)
    deadline = time.monotonic() + state.settings.request_timeout_s
    handle = scheduler.submit(prompt, params, wake_each=stream)
    headers = state.route_headers("edge", "default")
    if stream:
        return StreamingResponse(
            _stream(state, handle, fmt, model_id, deadline, echo),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    pieces: list[TokenPiece] = []
    try:
        end = await _collect(handle, pieces, deadline)
    except TimeoutError:
        handle.cancel()
        state.metrics.cancelled.labels(model_id, "timeout").inc()
        raise ApiError(
            504,
            f"the request did not finish within request_timeout_s={state.settings.request_timeout_s}; "
            "lower max_tokens or raise the timeout",
            type="server_error",
            code="timeout",
        ) from None
    except asyncio.CancelledError:
        handle.cancel()
        raise
    except AglError as exc:
        raise ApiError(
            500, f"generation failed: {exc}", type="server_error", code="generation_failed"
        ) from exc
    state.count_tokens(model_id, end)
    return json_response(fmt.full(pieces, end, prefix=echo), headers=headers)


async def _collect(
    handle: GenerationHandle, pieces: list[TokenPiece], deadline: float
) -> GenerationEnd:
    async with asyncio.timeout_at(_loop_deadline(deadline)):
        async for batch in handle.batches():
            for event in batch:
                if isinstance(event, GenerationEnd):
                    return event
                pieces.append(event)
    raise AglError("generation ended without a final event")


def _loop_deadline(deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


async def _stream(
    state: AgentState,
    handle: GenerationHandle,
    fmt: CompletionFormat,
    model_id: str,
    deadline: float,
    echo: str,
) -> AsyncIterator[bytes]:
    interval = state.settings.stream_interval_ms / 1000
    loop = asyncio.get_running_loop()
    first = True
    why = "disconnect"
    try:
        opening = fmt.opening()
        if opening:
            yield opening
        if echo:
            yield fmt.pieces([TokenPiece(text=echo, token_id=-1)])
        async with asyncio.timeout_at(_loop_deadline(deadline)):
            async for batch in handle.batches():
                sent_at = loop.time()
                end = batch[-1] if isinstance(batch[-1], GenerationEnd) else None
                pieces: list[TokenPiece] = [e for e in batch if isinstance(e, TokenPiece)]
                if first and pieces:
                    state.metrics.ttft.labels(model_id).observe(
                        time.monotonic() - handle.submitted_at
                    )
                    first = False
                if pieces and (chunk := fmt.pieces(pieces)):
                    yield chunk
                if end is not None:
                    state.count_tokens(model_id, end)
                    why = ""
                    yield fmt.closing(end)
                    return
                # Let tokens pile up for the rest of the interval: one wake-up and one
                # chunk for all of them instead of one per token.
                if interval and (pause := interval - (loop.time() - sent_at)) > 0:
                    await asyncio.sleep(pause)
    except TimeoutError:
        why = "timeout"
        yield error_event(
            f"the request did not finish within request_timeout_s={state.settings.request_timeout_s}",
            code="timeout",
        )
    except AglError as exc:
        why = "error"
        log.error("generation failed mid-stream: %s", exc)
        yield error_event(f"generation failed: {exc}", code="generation_failed")
    except Exception as exc:
        why = "error"
        log.exception("generation failed mid-stream")
        yield error_event(f"generation failed: {type(exc).__name__}", code="generation_failed")
    finally:
        if why:
            handle.cancel()
            state.metrics.cancelled.labels(model_id, why).inc()
