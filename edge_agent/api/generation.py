"""Local generation behind the HTTP API: submit to the scheduler, answer as JSON or SSE."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from edge_agent.api.openai_format import CompletionFormat, error_event
from edge_agent.errors import ApiError
from edge_agent.scheduler import Event, GenerationHandle
from shared.errors import AglError
from shared.runtimes.types import GenerationEnd, TokenPiece
from shared.telemetry import GenAiCall

if TYPE_CHECKING:
    from edge_agent.api.app import AgentState

log = logging.getLogger("edge_agent.api")


def loop_deadline(deadline: float) -> float:
    """Convert a ``time.monotonic()`` deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


def timeout_error(state: AgentState) -> ApiError:
    """The 504 answered when ``request_timeout_s`` runs out."""
    return ApiError(
        504,
        f"the request did not finish within request_timeout_s={state.settings.request_timeout_s}; "
        "lower max_tokens or raise the timeout",
        type="server_error",
        code="timeout",
    )


def _finish(call: GenAiCall | None, model_id: str, end: GenerationEnd) -> None:
    if call is not None:
        call.finish(
            response_model=model_id,
            input_tokens=end.prompt_tokens,
            output_tokens=end.completion_tokens,
            finish_reason=end.finish_reason,
        )


async def collect(
    state: AgentState,
    handle: GenerationHandle,
    model_id: str,
    deadline: float,
    *,
    call: GenAiCall | None = None,
) -> tuple[list[TokenPiece], GenerationEnd]:
    """Wait for a whole local generation (cancelling it on timeout or disconnect).

    ``call`` (the generation's span and GenAI metrics) is ended here, however it ends.
    """
    try:
        return await _collect(state, handle, model_id, deadline, call)
    finally:
        if call is not None and not call.ended:
            call.fail("error")


async def _collect(
    state: AgentState,
    handle: GenerationHandle,
    model_id: str,
    deadline: float,
    call: GenAiCall | None,
) -> tuple[list[TokenPiece], GenerationEnd]:
    pieces: list[TokenPiece] = []
    try:
        async with asyncio.timeout_at(loop_deadline(deadline)):
            async for batch in handle.batches():
                for event in batch:
                    if isinstance(event, GenerationEnd):
                        state.count_tokens(model_id, event)
                        _finish(call, model_id, event)
                        return pieces, event
                    if call is not None and not pieces:
                        call.first_token()
                    pieces.append(event)
    except TimeoutError:
        if call is not None:
            call.fail("timeout")
        handle.cancel()
        state.metrics.cancelled.labels(model_id, "timeout").inc()
        raise timeout_error(state) from None
    except asyncio.CancelledError:
        handle.cancel()
        raise
    except AglError as exc:
        raise ApiError(
            500, f"generation failed: {exc}", type="server_error", code="generation_failed"
        ) from exc
    raise ApiError(
        500, "generation ended without a final event", type="server_error", code="generation_failed"
    )


async def first_tokens(handle: GenerationHandle, k: int, deadline: float) -> list[Event]:
    """Read events until ``k`` token pieces (or the end) have arrived; used by first-K cascade."""
    held: list[Event] = []
    seen = 0
    async with asyncio.timeout_at(loop_deadline(deadline)):
        async for batch in handle.batches():
            held.extend(batch)
            seen += sum(1 for e in batch if isinstance(e, TokenPiece) and e.token_id >= 0)
            if seen >= k or isinstance(held[-1], GenerationEnd):
                break
    return held


async def local_sse(
    state: AgentState,
    handle: GenerationHandle,
    fmt: CompletionFormat,
    model_id: str,
    deadline: float,
    *,
    echo: str = "",
    held: Sequence[Event] = (),
    call: GenAiCall | None = None,
) -> AsyncIterator[bytes]:
    """SSE bytes of a local generation; ``held`` are events already read (first-K cascade).

    ``call`` (the generation's span and GenAI metrics) ends when the stream ends.
    """
    interval = state.settings.stream_interval_ms / 1000
    loop = asyncio.get_running_loop()
    first = True
    why = "disconnect"

    def render(batch: Sequence[Event]) -> tuple[bytes, GenerationEnd | None]:
        nonlocal first
        pieces = [e for e in batch if isinstance(e, TokenPiece)]
        end = batch[-1] if batch and isinstance(batch[-1], GenerationEnd) else None
        if first and pieces:
            state.metrics.ttft.labels(model_id).observe(time.monotonic() - handle.submitted_at)
            if call is not None:
                call.first_token()
            first = False
        return (fmt.pieces(pieces) if pieces else b""), end

    try:
        opening = fmt.opening()
        if opening:
            yield opening
        if echo:
            yield fmt.pieces([TokenPiece(text=echo, token_id=-1)])
        chunk, end = render(held)
        if chunk:
            yield chunk
        async with asyncio.timeout_at(loop_deadline(deadline)):
            if end is None:
                async for batch in handle.batches():
                    sent_at = loop.time()
                    chunk, end = render(batch)
                    if chunk:
                        yield chunk
                    if end is not None:
                        break
                    # Let tokens pile up for the rest of the interval: one wake-up and one
                    # chunk for all of them instead of one per token.
                    if interval and (pause := interval - (loop.time() - sent_at)) > 0:
                        await asyncio.sleep(pause)
        if end is not None:
            state.count_tokens(model_id, end)
            _finish(call, model_id, end)
            why = ""
            yield fmt.closing(end)
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
        if call is not None:
            call.fail(why or "error")  # no-op when the stream finished
