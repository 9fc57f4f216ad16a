"""Head sampling that still keeps every trace worth looking at.

A plain ratio sampler decides when a trace starts, before anyone knows it will fail, so at
10 % it loses nine error traces in ten. Here every span is recorded; a trace is exported when
its trace id falls in the ratio (decided as ``TraceIdRatioBased`` does, so edge and hub agree),
and otherwise only if one of this process's spans of it turns out to matter: an error status,
a fallback or local error on the route, or a span slower than ``slow_s``. Spans of a trace wait
(bounded) until its local root span ends; then they are exported or forgotten.

This is the same rule set as the collector's ``tail_sampling`` in ``deploy/otel-collector.yaml``
(errors, slow requests and fallbacks, plus the ratio), applied in each process.

    provider = TracerProvider(sampler=RecordAllSampler(0.1))
    provider.add_span_processor(KeepInterestingTraces(batch_processor, slow_s=5.0))
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = ["KeepInterestingTraces", "RecordAllSampler"]

_INTERESTING_REASONS = frozenset({"fallback", "local_error"})


class RecordAllSampler(Sampler):
    """Records every span; samples root traces at ``ratio`` and children as their parent."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            sampled = parent.trace_flags.sampled
        else:
            ratio = self._ratio.should_sample(parent_context, trace_id, name)
            sampled = ratio.decision is Decision.RECORD_AND_SAMPLE
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY
        return SamplingResult(decision, attributes, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"RecordAll{{{self._ratio.get_description()}}}"


class _Kept:
    """A recorded span, marked sampled so the exporter pipeline takes it."""

    def __init__(self, span: ReadableSpan) -> None:
        self._span = span
        ctx = span.context
        assert ctx is not None
        self.context = SpanContext(
            ctx.trace_id,
            ctx.span_id,
            ctx.is_remote,
            TraceFlags(TraceFlags.SAMPLED),
            ctx.trace_state,
        )

    def get_span_context(self) -> SpanContext:
        return self.context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._span, name)


class KeepInterestingTraces(SpanProcessor):
    """Passes sampled spans on, and unsampled ones only when their trace turned out to matter."""

    def __init__(
        self,
        inner: SpanProcessor,
        *,
        slow_s: float,
        max_traces: int = 2048,
        max_spans: int = 256,
    ) -> None:
        self._inner = inner
        self._slow_ns = int(slow_s * 1e9)
        self._max_traces = max_traces
        self._max_spans = max_spans
        self._waiting: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._kept: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None or ctx.trace_flags.sampled:
            self._inner.on_end(span)
            return
        release: list[ReadableSpan] = []
        with self._lock:
            tid = ctx.trace_id
            if tid in self._kept:
                release = [span]
            elif self._matters(span):
                release = [*self._waiting.pop(tid, []), span]
                self._kept[tid] = None
                while len(self._kept) > self._max_traces:
                    self._kept.popitem(last=False)
            elif span.parent is None or span.parent.is_remote:
                self._waiting.pop(tid, None)  # the local part ended: nothing worth keeping
            else:
                waiting = self._waiting.setdefault(tid, [])
                if len(waiting) < self._max_spans:
                    waiting.append(span)
                while len(self._waiting) > self._max_traces:
                    self._waiting.popitem(last=False)
        for kept in release:
            self._inner.on_end(_Kept(kept))  # type: ignore[arg-type]

    def _matters(self, span: ReadableSpan) -> bool:
        if span.status.status_code is StatusCode.ERROR:
            return True
        if (span.attributes or {}).get("agl.route.reason") in _INTERESTING_REASONS:
            return True
        start, end = span.start_time, span.end_time
        return start is not None and end is not None and end - start >= self._slow_ns

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
