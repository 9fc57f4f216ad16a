"""One generation (local, escalated, or served by the hub) as a span plus GenAI metrics.

    call = GenAiCall.start(instruments, "chat", request_model="smollm2", tier="edge",
                           max_tokens=64, temperature=0.0)
    call.first_token()                          # once, when the first token is out
    call.finish(response_model="smollm2", input_tokens=12, output_tokens=64,
                finish_reason="length")         # ends the span, records the metrics

No span per token: a stream is one span that ends when the stream ends.
"""

from __future__ import annotations

import contextlib
import time
from typing import Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.telemetry.instruments import Instruments

Operation = Literal["chat", "text_completion", "embeddings"]

SYSTEM = "open-autoglm"
OPERATION = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
MAX_TOKENS = "gen_ai.request.max_tokens"
TEMPERATURE = "gen_ai.request.temperature"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIER = "agl.tier"
ROUTE_REASON = "agl.route.reason"
ROUTE_SCORE = "agl.route.score"
ROUTE_THRESHOLD = "agl.route.threshold"


def operation_for(kind: str) -> Operation:
    """GenAI operation name of a request kind (``chat``, ``completion``, ``embed``…)."""
    if kind == "chat":
        return "chat"
    if kind in ("embed", "embeddings"):
        return "embeddings"
    return "text_completion"


class GenAiCall:
    """The span and the metric attributes of one generation; see the module docstring."""

    def __init__(
        self, instruments: Instruments, span: Span, attrs: dict[str, str], started: float
    ) -> None:
        self.instruments = instruments
        self.span = span
        self.attrs = attrs
        self.started = started
        self.first_at: float | None = None
        self.ended = False

    @classmethod
    def start(
        cls,
        instruments: Instruments,
        operation: Operation,
        *,
        request_model: str,
        tier: str,
        kind: SpanKind = SpanKind.INTERNAL,
        max_tokens: int | None = None,
        temperature: float | None = None,
        span_name: str | None = None,
        started: float | None = None,
        parent: Context | None = None,
    ) -> GenAiCall:
        """Start the span ``"<operation> <model>"`` as a child of ``parent`` (default: current)."""
        attrs = {OPERATION: operation, REQUEST_MODEL: request_model, TIER: tier}
        span = instruments.telemetry.tracer.start_span(
            span_name or f"{operation} {request_model}", context=parent, kind=kind
        )
        if span.is_recording():
            span.set_attributes({**attrs, "gen_ai.system": SYSTEM, "gen_ai.provider.name": SYSTEM})
            if max_tokens:
                span.set_attribute(MAX_TOKENS, max_tokens)
            if temperature is not None:
                span.set_attribute(TEMPERATURE, temperature)
        return cls(instruments, span, attrs, time.monotonic() if started is None else started)

    def first_token(self) -> None:
        """Note the first generated token (time to first token); later calls do nothing."""
        if self.first_at is None:
            self.first_at = time.monotonic()
            self.instruments.first_token(self.attrs, self.first_at - self.started)

    def finish(
        self,
        *,
        response_model: str,
        input_tokens: int,
        output_tokens: int,
        finish_reason: str,
    ) -> None:
        """End a successful generation: usage on the span, token and duration metrics."""
        if self.ended:
            return
        self.ended = True
        now = time.monotonic()
        if self.first_at is not None and output_tokens > 1:
            self.instruments.per_output_token(
                self.attrs, (now - self.first_at) / (output_tokens - 1)
            )
        self.instruments.tokens(self.attrs, input_tokens=input_tokens, output_tokens=output_tokens)
        self.instruments.duration(self.attrs, now - self.started)
        if self.span.is_recording():
            self.span.set_attributes(
                {
                    RESPONSE_MODEL: response_model,
                    INPUT_TOKENS: input_tokens,
                    OUTPUT_TOKENS: output_tokens,
                    FINISH_REASONS: [finish_reason],
                }
            )
        self.span.end()

    def fail(self, error_type: str, message: str = "") -> None:
        """End a failed generation: error status on the span, duration with ``error.type``."""
        if self.ended:
            return
        self.ended = True
        self.instruments.duration(self.attrs, time.monotonic() - self.started, error=error_type)
        if self.span.is_recording():
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(Status(StatusCode.ERROR, message or error_type))
        self.span.end()

    def abandon(self, why: str) -> None:
        """End the span without metrics: the work was dropped on purpose (``why``), not failed."""
        if self.ended:
            return
        self.ended = True
        if self.span.is_recording():
            self.span.set_attribute("agl.abandoned", why)
        self.span.end()

    def current(self) -> contextlib.AbstractContextManager[trace.Span]:
        """Make the span current (without ending it on exit), e.g. around a NATS publish."""
        return trace.use_span(self.span, end_on_exit=False)
