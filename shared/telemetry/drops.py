"""Counting what telemetry had to throw away (full queues, failed exports), best-effort.

The SDK's batch processors drop silently when their bounded queue is full; these wrappers
keep a tally so ``agl_telemetry_dropped_total{signal}`` shows a collector that is down.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

Signal = Literal["traces", "logs", "loki"]
"""``logs`` counts OTLP log records, ``loki`` lines pushed straight to Loki."""


class DropCounter:
    """Thread-safe tally of dropped spans and log records, and an estimate of queue fill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dropped: dict[str, int] = {"traces": 0, "logs": 0, "loki": 0}
        self._pending: dict[str, int] = {"traces": 0, "logs": 0, "loki": 0}

    def enqueued(self, signal: Signal, capacity: int) -> None:
        """One item entered a queue of ``capacity``; a full queue drops one (the oldest)."""
        with self._lock:
            if self._pending[signal] >= capacity:
                self._dropped[signal] += 1
            else:
                self._pending[signal] += 1

    def submitted(self, signal: Signal, count: int) -> None:
        """``count`` items left the queue for the exporter."""
        with self._lock:
            self._pending[signal] = max(0, self._pending[signal] - count)

    def add(self, signal: Signal, count: int) -> None:
        """``count`` items were lost (an export failed or timed out)."""
        with self._lock:
            self._dropped[signal] += count

    def snapshot(self) -> dict[str, int]:
        """Dropped items per signal so far."""
        with self._lock:
            return dict(self._dropped)


class CountingSpanExporter(SpanExporter):
    """Passes spans on to ``inner`` and counts the ones it failed to deliver."""

    def __init__(self, inner: SpanExporter, drops: DropCounter) -> None:
        self._inner = inner
        self._drops = drops

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._drops.submitted("traces", len(spans))
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._drops.add("traces", len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingSpanProcessor(SpanProcessor):
    """Wraps a batch processor to notice when its bounded queue overflows."""

    def __init__(self, inner: SpanProcessor, drops: DropCounter, capacity: int) -> None:
        self._inner = inner
        self._drops = drops
        self._capacity = capacity

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._drops.enqueued("traces", self._capacity)
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """Passes log records on to ``inner`` and counts the ones it failed to deliver."""

    def __init__(self, inner: LogRecordExporter, drops: DropCounter) -> None:
        self._inner = inner
        self._drops = drops

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self._drops.submitted("logs", len(batch))
        try:
            result = self._inner.export(batch)
        except Exception:
            result = LogRecordExportResult.FAILURE
        if result is not LogRecordExportResult.SUCCESS:
            self._drops.add("logs", len(batch))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogProcessor(LogRecordProcessor):
    """Wraps a batch log processor to notice when its bounded queue overflows."""

    def __init__(self, inner: LogRecordProcessor, drops: DropCounter, capacity: int) -> None:
        self._inner = inner
        self._drops = drops
        self._capacity = capacity

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._drops.enqueued("logs", self._capacity)
        self._inner.on_emit(log_record)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
