"""The local executor: one generation on the device's model, as events.

    handle = scheduler.submit(prompt, params, wake_each=stream)
    run = LocalRun(handle, model_id="smollm2", deadline=d, timeout_s=120, metrics=m, call=call)
    async for event in run.events(): ...

A run owns the generation until its stream ends: a timeout, an error or an early close (the
client went away) cancels the generation and counts why; ``abandon()`` stops it without counting
a failure (the cascade escalated). ``call`` (the span and GenAI metrics of the generation) ends
with the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from edge_agent.execute.events import Event, Failure, GenerationEnd, Pieces, Start
from edge_agent.metrics import AgentMetrics
from edge_agent.scheduler import GenerationHandle
from shared.errors import AglError
from shared.telemetry import GenAiCall

log = logging.getLogger("edge_agent.execute")

__all__ = ["LocalRun", "finish_call", "timeout_message"]


def timeout_message(timeout_s: float) -> str:
    """What a client reads when ``request_timeout_s`` runs out."""
    return (
        f"the request did not finish within request_timeout_s={timeout_s:g}; "
        "lower max_tokens or raise the timeout"
    )


def finish_call(call: GenAiCall | None, model: str, end: GenerationEnd) -> None:
    """End a generation's span and record its GenAI metrics."""
    if call is not None:
        call.finish(
            response_model=model,
            input_tokens=end.prompt_tokens,
            output_tokens=end.completion_tokens,
            finish_reason=end.finish_reason,
        )


class LocalRun:
    """One submitted local generation, read as events (see the module docstring)."""

    def __init__(
        self,
        handle: GenerationHandle,
        *,
        model_id: str,
        deadline: float,
        timeout_s: float,
        metrics: AgentMetrics,
        call: GenAiCall | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.handle = handle
        self.on_close = on_close
        """Called once the stream is over (the agent refreshes its queue-depth gauge)."""
        self.model_id = model_id
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.call = call
        self._abandoned = False

    def abandon(self, why: str) -> None:
        """Stop the generation because its answer is no longer wanted (not a failure)."""
        self._abandoned = True
        self.handle.cancel()
        if self.call is not None:
            self.call.abandon(why)

    async def events(self) -> AsyncIterator[Event]:
        """Events of the generation, ending by the deadline (``time.monotonic()``)."""
        why = "disconnect"
        handle, model_id, call, metrics = self.handle, self.model_id, self.call, self.metrics
        batches = handle.batches()
        first = True
        try:
            yield Start(model_id)
            while True:
                try:
                    left = self.deadline - time.monotonic()
                    if left <= 0:  # checked first: a ready batch is returned without waiting
                        raise TimeoutError
                    async with asyncio.timeout(left):
                        batch = await anext(batches, None)
                except TimeoutError:
                    why = "timeout"
                    yield Failure(504, "timeout", timeout_message(self.timeout_s))
                    return
                if batch is None:
                    why = "error"
                    yield Failure(
                        500, "generation_failed", "generation ended without a final event"
                    )
                    return
                end = batch[-1] if isinstance(batch[-1], GenerationEnd) else None
                pieces = batch[:-1] if end is not None else batch
                if pieces:
                    if first and call is not None:
                        # The worker's own time: a non-streamed reader only wakes at the end.
                        call.first_token(at=handle.first_token_at)
                    first = False
                    yield Pieces(pieces)  # type: ignore[arg-type]
                if end is not None:
                    finish_call(call, model_id, end)
                    why = ""
                    yield end
                    return
        except AglError as exc:
            why = "error"
            log.error("local generation failed: %s", exc)
            yield Failure(500, "generation_failed", f"generation failed: {exc}")
        except Exception as exc:
            why = "error"
            log.exception("local generation failed")
            yield Failure(500, "generation_failed", f"generation failed: {type(exc).__name__}")
        finally:
            if why and not self._abandoned:
                handle.cancel()
                metrics.cancelled.labels(model_id, why).inc()
                if call is not None:
                    call.fail(why)
            await batches.aclose()
            if self.on_close is not None:
                self.on_close()
