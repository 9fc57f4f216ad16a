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

Operation = Literal["chat", "text_completion", "embeddings", "classify"]
"""GenAI operation names; ``classify`` is ours (ONNX classifiers), the rest are the semconv's."""

PROVIDER = "open-autoglm"
"""``gen_ai.provider.name`` of generations made by our own tiers."""
PROVIDER_NAME = "gen_ai.provider.name"
RESPONSE_ID = "gen_ai.response.id"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
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
        self,
        instruments: Instruments,
        span: Span,
        attrs: dict[str, str],
        started: float,
        *,
        client: bool = False,
    ) -> None:
        self.instruments = instruments
        self.span = span
        self.attrs = attrs
        self.started = started
        self.client = client
        """A call to another tier (``gen_ai.client.*``), not a generation made here."""
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
        server_address: str | None = None,
        server_port: int | None = None,
        response_id: str | None = None,
    ) -> GenAiCall:
        """Start the span ``"<operation> <model>"`` as a child of ``parent`` (default: current).

        A ``SpanKind.CLIENT`` call is a call to another tier: it records ``gen_ai.client.*``
        with ``server.address``; any other kind is a generation made here (``gen_ai.server.*``).
        ``temperature`` is reported only when given: pass it only if the client set it.
        """
        attrs = {
            OPERATION: operation,
            REQUEST_MODEL: request_model,
            TIER: tier,
            PROVIDER_NAME: PROVIDER,
        }
        client = kind is SpanKind.CLIENT
        if client and server_address:
            attrs[SERVER_ADDRESS] = server_address
        span = instruments.telemetry.tracer.start_span(
            span_name or f"{operation} {request_model}", context=parent, kind=kind
        )
        if span.is_recording():
            span.set_attributes(attrs)
            if client and server_port:
                span.set_attribute(SERVER_PORT, server_port)
            if response_id:
                span.set_attribute(RESPONSE_ID, response_id)
            if max_tokens:
                span.set_attribute(MAX_TOKENS, max_tokens)
            if temperature is not None:
                span.set_attribute(TEMPERATURE, temperature)
        started_at = time.monotonic() if started is None else started
        return cls(instruments, span, attrs, started_at, client=client)

    def first_token(self, at: float | None = None) -> None:
        """Note the first generated token (``time.monotonic()`` ``at``, default now); once only.

        A client call notes it for TPOT-free bookkeeping only: TTFT is a server figure.
        """
        if self.first_at is None:
            self.first_at = time.monotonic() if at is None else at
            if not self.client:
                self.instruments.first_token(self.attrs, max(0.0, self.first_at - self.started))

    def finish(
        self,
        *,
        response_model: str,
        input_tokens: int,
        output_tokens: int,
        finish_reason: str,
    ) -> None:
        """End a successful generation or call: usage on the span, its metrics."""
        if self.ended:
            return
        self.ended = True
        now = time.monotonic()
        if self.client:
            self.instruments.called(
                self.attrs,
                now - self.started,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
            )
        else:
            tpot = None
            if self.first_at is not None and output_tokens > 1:
                tpot = max(0.0, now - self.first_at) / (output_tokens - 1)
            self.instruments.served(
                self.attrs,
                now - self.started,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                per_output_token=tpot,
            )
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
        """End a failed generation or call: error status on the span, duration with ``error.type``."""
        if self.ended:
            return
        self.ended = True
        self.instruments.failed(
            self.attrs, time.monotonic() - self.started, error=error_type, client=self.client
        )
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
