"""The metrics both daemons export: GenAI semantic conventions plus Open-AutoGLM's own.

Each figure is written once and exported twice, over OTLP under its OpenTelemetry name and on
``/metrics`` under its Prometheus name (see :mod:`shared.telemetry.dual`). Figures marked
"read" are read by a callback at collection time instead of being recorded.

===================================  ===========================================  ===============
OpenTelemetry: name, attributes      Prometheus: name, labels                     kind, unit
===================================  ===========================================  ===============
**Both daemons** (:class:`Instruments`)
gen_ai.client.token.usage            gen_ai_client_token_usage                    histogram
  GenAI, gen_ai.token.type             GenAI, gen_ai_token_type                   {token}
gen_ai.server.request.duration       gen_ai_server_request_duration_seconds       histogram, s
  GenAI, error.type (errors only)      GenAI, error_type ("" if none)
gen_ai.server.time_to_first_token    gen_ai_server_time_to_first_token_seconds    histogram, s
  GenAI                                GenAI
gen_ai.server.time_per_output_token  gen_ai_server_time_per_output_token_seconds  histogram, s
  GenAI                                GenAI
agl.escalations                      agl_escalations_total                        counter
  agl.route.reason                     reason                                     {request}
agl.plugin.errors                    agl_plugin_errors_total                      counter
  agl.plugin.name, error.type          plugin, kind                               {error}
agl.telemetry.dropped                agl_telemetry_dropped_total                  counter, read
  signal                               signal                                     {item}
**Edge** (``edge_agent.metrics.AgentMetrics`` and its ``watch_gauge``)
agl.http.requests                    agl_http_requests_total                      counter
  http.route,                          route, status, tier, reason                {request}
  http.response.status_code,
  agl.tier, agl.route.reason
agl.http.request.duration            agl_http_request_duration_seconds            histogram, s
  http.route                           route
agl.tokens                           agl_tokens_total                             counter
  gen_ai.request.model,                model, kind (prompt, completion)           {token}
  agl.token.kind
agl.queue.depth                      agl_queue_depth                              gauge
  gen_ai.request.model                 model                                      {request}
agl.queue.rejected                   agl_queue_rejected_total                     counter
  gen_ai.request.model                 model                                      {request}
agl.generations.cancelled            agl_generations_cancelled_total              counter
  gen_ai.request.model,                model, why                                 {generation}
  agl.cancel.reason
agl.route.decisions                  agl_route_decisions_total                    counter
  agl.tier, agl.route.reason           tier, reason                               {decision}
agl.cloud.failures                   agl_cloud_failures_total                     counter
  error.type                           kind                                       {failure}
agl.cascade.nll (= -score)           agl_cascade_score                            histogram, 1
agl.model.ready                      agl_model_ready                              gauge, 1
agl.circuit.state                    agl_circuit_state (0 closed/1 half-open/2    gauge, read
  peer                                 open); peer
**Hub** (its ``watch_gauge``)
agl.queue.depth                      agl_hub_queue_depth                          gauge, read
  gen_ai.request.model                 model
===================================  ===========================================  ===============

GenAI stands for ``gen_ai.operation.name``, ``gen_ai.request.model`` and ``agl.tier``
(Prometheus: ``gen_ai_operation_name``, ``gen_ai_request_model``, ``agl_tier``). OTel
histograms take no negative values, so the cascade's mean token log-probability (never
positive) goes out over OTLP negated, as the mean negative log-likelihood ``agl.cascade.nll``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar

from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.telemetry.dual import DualCounter, DualHistogram
from shared.telemetry.providers import Telemetry

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
#: The GenAI labels every ``gen_ai.*`` figure carries: Prometheus label -> OTel attribute.
_GENAI = {
    "gen_ai_operation_name": "gen_ai.operation.name",
    "gen_ai_request_model": "gen_ai.request.model",
    "agl_tier": "agl.tier",
}
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

    Each figure is one dual instrument (``token_usage``, ``request_duration``,
    ``time_to_first_token``, ``time_per_output_token``, ``escalations``, ``plugin_errors``);
    the methods below fill in their labels. ``activate()`` makes it the one
    :func:`current_instruments` returns in this context (the edge does that per request), so
    plugin code can record without a handle.
    """

    def __init__(self, telemetry: Telemetry, registry: CollectorRegistry) -> None:
        self.telemetry = telemetry
        self.registry = registry
        meter = telemetry.meter
        self.token_usage = DualHistogram(
            "gen_ai.client.token.usage",
            "gen_ai_client_token_usage",
            "Tokens used per request (input and output)",
            unit="{token}",
            labels={**_GENAI, "gen_ai_token_type": "gen_ai.token.type"},
            buckets=_TOKENS,
            registry=registry,
            meter=meter,
        )
        self.request_duration = DualHistogram(
            "gen_ai.server.request.duration",
            "gen_ai_server_request_duration_seconds",
            "Generation request duration",
            unit="s",
            labels={**_GENAI, "error_type": "error.type"},
            buckets=_SECONDS,
            registry=registry,
            meter=meter,
        )
        self.time_to_first_token = DualHistogram(
            "gen_ai.server.time_to_first_token",
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first generated token",
            unit="s",
            labels=_GENAI,
            buckets=_SECONDS,
            registry=registry,
            meter=meter,
        )
        self.time_per_output_token = DualHistogram(
            "gen_ai.server.time_per_output_token",
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first",
            unit="s",
            labels=_GENAI,
            buckets=_PER_TOKEN,
            registry=registry,
            meter=meter,
        )
        self.escalations = DualCounter(
            "agl.escalations",
            "agl_escalations",
            "Requests sent to the hub, by router reason",
            unit="{request}",
            labels={"reason": "agl.route.reason"},
            registry=registry,
            meter=meter,
        )
        self.plugin_errors = DualCounter(
            "agl.plugin.errors",
            "agl_plugin_errors",
            "Plugin hook failures by plugin and kind (error, timeout, …)",
            unit="{error}",
            labels={"plugin": "agl.plugin.name", "kind": "error.type"},
            registry=registry,
            meter=meter,
        )
        self._watch(
            otel_name="agl.telemetry.dropped",
            prom_name="agl_telemetry_dropped",
            description="Spans and log records telemetry had to drop (full queue, failed export)",
            unit="{item}",
            label="signal",
            otel_label="signal",
            read=lambda: {k: float(v) for k, v in telemetry.drops.snapshot().items()},
            counter=True,
        )
        _fallback[:] = [self]

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
        operation, model, tier = _labels(attrs)
        self.token_usage.labels(operation, model, tier, "input").observe(input_tokens)
        self.token_usage.labels(operation, model, tier, "output").observe(output_tokens)

    def duration(self, attrs: Mapping[str, str], seconds: float, *, error: str = "") -> None:
        """Record ``gen_ai.server.request.duration``; ``error`` is the error type, if any."""
        self.request_duration.labels(*_labels(attrs), error).observe(seconds)

    def first_token(self, attrs: Mapping[str, str], seconds: float) -> None:
        """Record ``gen_ai.server.time_to_first_token``."""
        self.time_to_first_token.labels(*_labels(attrs)).observe(seconds)

    def per_output_token(self, attrs: Mapping[str, str], seconds: float) -> None:
        """Record ``gen_ai.server.time_per_output_token``."""
        self.time_per_output_token.labels(*_labels(attrs)).observe(seconds)

    def escalation(self, reason: str) -> None:
        """Count one request sent to the hub."""
        self.escalations.labels(reason).inc()

    def plugin_error(self, plugin: str, kind: str) -> None:
        """Count one plugin failure (``kind``: error, timeout, …; keep it a small fixed set)."""
        self.plugin_errors.labels(plugin, kind).inc()

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

        Use it for state that lives elsewhere and is cheap to read; a value the daemon sets
        itself is a :class:`~shared.telemetry.dual.DualGauge`. ``prom_name`` None: OTel only.
        The OTel attribute is ``gen_ai.request.model`` for ``label="model"``, else ``label``
        with ``_`` as ``.``.
        """
        otel_label = label.replace("_", ".") if label != "model" else "gen_ai.request.model"
        self._watch(
            otel_name=otel_name,
            prom_name=prom_name,
            description=description,
            unit="",
            label=label,
            otel_label=otel_label,
            read=read,
        )

    def _watch(
        self,
        *,
        otel_name: str,
        prom_name: str | None,
        description: str,
        unit: str,
        label: str,
        otel_label: str,
        read: Callable[[], Mapping[str, float]],
        counter: bool = False,
    ) -> None:
        """One figure read by ``read`` at collection time, on both sides."""
        if prom_name is not None:
            self.registry.register(
                _CallbackCollector(prom_name, description, label, read, counter=counter)
            )

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for key, value in read().items():
                yield Observation(value, {otel_label: key})

        meter = self.telemetry.meter
        create = meter.create_observable_counter if counter else meter.create_observable_gauge
        create(otel_name, callbacks=[observe], unit=unit, description=description)


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
