"""The metrics both daemons export: GenAI semantic conventions plus Open-AutoGLM's own.

Each metric exists twice: as an OpenTelemetry instrument (pushed over OTLP) and as a
``prometheus_client`` metric with the Prometheus-style name (scraped from ``/metrics``):

================================  ===========================================  ============
OpenTelemetry                      Prometheus                                   labels
================================  ===========================================  ============
gen_ai.client.token.usage          gen_ai_client_token_usage                    token type
gen_ai.server.request.duration     gen_ai_server_request_duration_seconds       error type
gen_ai.server.time_to_first_token  gen_ai_server_time_to_first_token_seconds
gen_ai.server.time_per_output_token gen_ai_server_time_per_output_token_seconds
agl.escalations                    agl_escalations_total                        reason
agl.plugin.errors                  agl_plugin_errors_total                      plugin, kind
agl.circuit.state                  agl_circuit_state (0 closed/1 half-open/2 open)  peer
agl.queue.depth (hub)              agl_hub_queue_depth                          model
agl.telemetry.dropped              agl_telemetry_dropped_total                  signal
================================  ===========================================  ============

GenAI metrics also carry ``gen_ai.operation.name``, ``gen_ai.request.model`` and ``agl.tier``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar

from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.telemetry.providers import Telemetry

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
_GENAI = ["gen_ai_operation_name", "gen_ai_request_model", "agl_tier"]
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}

_active: ContextVar[Instruments | None] = ContextVar("agl_instruments", default=None)
_fallback: list[Instruments] = []


class _CallbackCollector(Collector):
    """A Prometheus collector whose samples come from a callback at scrape time."""

    def __init__(
        self,
        name: str,
        doc: str,
        label: str,
        read: Callable[[], Mapping[str, float]],
        *,
        counter: bool = False,
    ) -> None:
        self._name, self._doc, self._label, self._read, self._counter = (
            name,
            doc,
            label,
            read,
            counter,
        )

    def collect(self) -> Iterable[Metric]:
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(self._name, self._doc, labels=[self._label])
            if self._counter
            else GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        )
        for key, value in self._read().items():
            family.add_metric([key], value)
        yield family


class Instruments:
    """Records one daemon's metrics into its Prometheus ``registry`` and its OTel meter.

    ``activate()`` makes it the one :func:`current_instruments` returns in this context (the
    edge does that per request), so plugin code can record without a handle.
    """

    def __init__(self, telemetry: Telemetry, registry: CollectorRegistry) -> None:
        self.telemetry = telemetry
        self.registry = registry
        r, meter = registry, telemetry.meter
        self.prom_tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per request (GenAI semconv gen_ai.client.token.usage)",
            [*_GENAI, "gen_ai_token_type"],
            buckets=_TOKENS,
            registry=r,
        )
        self.prom_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Generation request duration (GenAI semconv gen_ai.server.request.duration)",
            [*_GENAI, "error_type"],
            buckets=_SECONDS,
            registry=r,
        )
        self.prom_ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first generated token",
            _GENAI,
            buckets=_SECONDS,
            registry=r,
        )
        self.prom_tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first",
            _GENAI,
            buckets=_PER_TOKEN,
            registry=r,
        )
        self.prom_escalations = Counter(
            "agl_escalations", "Requests sent to the hub, by router reason", ["reason"], registry=r
        )
        self.prom_plugin_errors = Counter(
            "agl_plugin_errors",
            "Plugin hook failures by plugin and kind (error, timeout, …)",
            ["plugin", "kind"],
            registry=r,
        )
        r.register(
            _CallbackCollector(
                "agl_telemetry_dropped",
                "Spans and log records telemetry had to drop (full queue, failed export)",
                "signal",
                lambda: {k: float(v) for k, v in telemetry.drops.snapshot().items()},
                counter=True,
            )
        )
        self.otel_tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per request",
            explicit_bucket_boundaries_advisory=list(map(float, _TOKENS)),
        )
        self.otel_duration = meter.create_histogram(
            "gen_ai.server.request.duration",
            unit="s",
            description="Generation request duration",
            explicit_bucket_boundaries_advisory=list(map(float, _SECONDS)),
        )
        self.otel_ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to the first generated token",
            explicit_bucket_boundaries_advisory=list(map(float, _SECONDS)),
        )
        self.otel_tpot = meter.create_histogram(
            "gen_ai.server.time_per_output_token",
            unit="s",
            description="Time per output token after the first",
            explicit_bucket_boundaries_advisory=list(_PER_TOKEN),
        )
        self.otel_escalations = meter.create_counter(
            "agl.escalations", unit="{request}", description="Requests sent to the hub"
        )
        self.otel_plugin_errors = meter.create_counter(
            "agl.plugin.errors", unit="{error}", description="Plugin hook failures"
        )
        meter.create_observable_counter(
            "agl.telemetry.dropped",
            callbacks=[self._observe_drops],
            unit="{item}",
            description="Spans and log records telemetry had to drop",
        )
        _fallback[:] = [self]

    def _observe_drops(self, options: CallbackOptions) -> Iterable[Observation]:
        for signal, count in self.telemetry.drops.snapshot().items():
            yield Observation(count, {"signal": signal})

    @contextlib.contextmanager
    def activate(self) -> Iterator[Instruments]:
        """Make these the instruments :func:`record_plugin_error` uses in this context."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)

    def tokens(self, attrs: Mapping[str, str], *, input_tokens: int, output_tokens: int) -> None:
        """Record ``gen_ai.client.token.usage`` for one request (input and output)."""
        labels = _labels(attrs)
        for kind, count in (("input", input_tokens), ("output", output_tokens)):
            self.prom_tokens.labels(*labels, kind).observe(count)
            self.otel_tokens.record(count, {**attrs, "gen_ai.token.type": kind})

    def duration(self, attrs: Mapping[str, str], seconds: float, *, error: str = "") -> None:
        """Record ``gen_ai.server.request.duration``; ``error`` is the error type, if any."""
        self.prom_duration.labels(*_labels(attrs), error).observe(seconds)
        self.otel_duration.record(seconds, {**attrs, "error.type": error} if error else attrs)

    def first_token(self, attrs: Mapping[str, str], seconds: float) -> None:
        """Record ``gen_ai.server.time_to_first_token``."""
        self.prom_ttft.labels(*_labels(attrs)).observe(seconds)
        self.otel_ttft.record(seconds, attrs)

    def per_output_token(self, attrs: Mapping[str, str], seconds: float) -> None:
        """Record ``gen_ai.server.time_per_output_token``."""
        self.prom_tpot.labels(*_labels(attrs)).observe(seconds)
        self.otel_tpot.record(seconds, attrs)

    def escalation(self, reason: str) -> None:
        """Count one request sent to the hub."""
        self.prom_escalations.labels(reason).inc()
        self.otel_escalations.add(1, {"agl.route.reason": reason})

    def plugin_error(self, plugin: str, kind: str) -> None:
        """Count one plugin failure (``kind``: error, timeout, …; keep it a small fixed set)."""
        self.prom_plugin_errors.labels(plugin, kind).inc()
        self.otel_plugin_errors.add(1, {"agl.plugin.name": plugin, "error.type": kind})

    def watch_gauge(
        self,
        *,
        otel_name: str,
        prom_name: str | None,
        description: str,
        label: str,
        read: Callable[[], Mapping[str, float]],
    ) -> None:
        """A gauge read at collection time, e.g. circuit state or queue depth per model.

        ``prom_name`` None: OTel only (the daemon already has that Prometheus gauge).
        """
        if prom_name is not None:
            self.registry.register(_CallbackCollector(prom_name, description, label, read))
        otel_label = label.replace("_", ".") if label != "model" else "gen_ai.request.model"

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for key, value in read().items():
                yield Observation(value, {otel_label: key})

        self.telemetry.meter.create_observable_gauge(
            otel_name, callbacks=[observe], description=description
        )


def _labels(attrs: Mapping[str, str]) -> tuple[str, str, str]:
    return (
        attrs.get("gen_ai.operation.name", ""),
        attrs.get("gen_ai.request.model", ""),
        attrs.get("agl.tier", ""),
    )


def current_instruments() -> Instruments | None:
    """The instruments activated in this context, else the most recently created ones."""
    found = _active.get()
    if found is not None:
        return found
    return _fallback[0] if _fallback else None
