"""Span helpers: plugin hooks, and W3C trace context in NATS headers.

with plugin_span("pii-filter", "on_request"):
    verdict = host.call(...)
record_plugin_error("pii-filter", "timeout")     # counted in agl_plugin_errors_total

headers = inject_headers({})                      # the current span as ``traceparent``
ctx = extract_context(msg.headers)                # on the receiving side
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from shared.telemetry.instruments import current_instruments

_NOOP = trace.NoOpTracer()


def current_tracer() -> trace.Tracer:
    """The tracer of the daemon serving this context (a no-op one when telemetry is off)."""
    found = current_instruments()
    return found.telemetry.tracer if found is not None else _NOOP


@contextlib.contextmanager
def plugin_span(name: str, hook: str) -> Iterator[Span]:
    """A child span ``plugin <hook> <name>`` around one plugin hook call.

    An exception escaping the block is recorded on the span (status ERROR) and re-raised.
    Attributes: ``agl.plugin.name``, ``agl.plugin.hook``; add more on the yielded span.
    """
    with current_tracer().start_as_current_span(
        f"plugin {hook} {name}",
        kind=SpanKind.INTERNAL,
        attributes={"agl.plugin.name": name, "agl.plugin.hook": hook},
    ) as span:
        yield span


def record_plugin_error(plugin: str, kind: str) -> None:
    """Count a plugin failure (``kind``: ``error``, ``timeout``, ``rejected`` …, a small set).

    Also adds an ``agl.plugin.error`` event to the current span. Safe to call anywhere: with
    no daemon instruments around it only marks the span.
    """
    found = current_instruments()
    if found is not None:
        found.plugin_error(plugin, kind)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("agl.plugin.error", {"agl.plugin.name": plugin, "error.type": kind})


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current span's ``traceparent`` (and ``tracestate``) to ``headers``."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The remote parent carried by ``headers`` (an empty context when there is none)."""
    return propagate.extract(dict(headers or {}))
