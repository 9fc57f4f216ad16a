"""The metrics both daemons export: GenAI semantic conventions plus Open-AutoGLM's own.

Each figure is written once and exported twice, over OTLP under its OpenTelemetry name and on
``/metrics`` under its Prometheus name (see :mod:`shared.telemetry.dual`), which is the OTel name
with ``.`` as ``_`` (plus ``_seconds``/``_total``). A daemon is a server for the generations it
makes (``gen_ai.server.*``, ``agl.tokens``) and a client for its calls to another tier
(``gen_ai.client.*`` with ``server.address``). The full list of figures, with labels and units,
is generated from these objects (:mod:`shared.telemetry.catalog`) into the README.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.telemetry.catalog import Figure
from shared.telemetry.dual import DualCounter, DualGauge, DualHistogram
from shared.telemetry.providers import Telemetry

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
_SEQUENCES = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
#: The GenAI labels every ``gen_ai.*`` figure carries: Prometheus label -> OTel attribute.
_GENAI = {
    "gen_ai_operation_name": "gen_ai.operation.name",
    "gen_ai_request_model": "gen_ai.request.model",
    "agl_tier": "agl.tier",
    "gen_ai_provider_name": "gen_ai.provider.name",
}
_SERVER = {"server_address": "server.address"}
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

    Each figure is one dual instrument. A daemon is a *server* for the generations it makes
    (``gen_ai.server.*`` and ``agl.tokens``) and a *client* for the calls it makes to another
    tier (``gen_ai.client.*``, with ``server.address``): the edge is both, the hub only a server.
    So summing ``agl.tokens`` over the fleet counts every token once, where it was generated.
    ``activate()`` makes these the instruments :func:`current_instruments` returns in this
    context (the edge does that per request), so plugin code can record without a handle.
    """

    def __init__(
        self, telemetry: Telemetry, registry: CollectorRegistry, *, client_calls: bool = True
    ) -> None:
        self.telemetry = telemetry
        self.registry = registry
        meter = telemetry.meter
        #: Figures read at collection time (``watch_gauge``), for the catalogue.
        self.watched: list[Figure] = []
        #: Whether this daemon calls another tier (the edge does; the hub does not, so it
        #: exports no ``gen_ai.client.*`` figures at all).
        self.client_calls = client_calls
        if client_calls:
            self._client_figures(meter)
        self._server_figures(meter)

    def _client_figures(self, meter: Meter) -> None:
        registry = self.registry
        self.token_usage = DualHistogram(
            "gen_ai.client.token.usage",
            "gen_ai_client_token_usage",
            "Tokens per call to another tier (input and output), seen by the caller",
            unit="{token}",
            labels={**_GENAI, "gen_ai_token_type": "gen_ai.token.type", **_SERVER},
            buckets=_TOKENS,
            registry=registry,
            meter=meter,
        )
        self.client_duration = DualHistogram(
            "gen_ai.client.operation.duration",
            "gen_ai_client_operation_duration_seconds",
            "Duration of a call to another tier, seen by the caller",
            unit="s",
            labels={**_GENAI, "error_type": "error.type", **_SERVER},
            buckets=_SECONDS,
            registry=registry,
            meter=meter,
        )

    def _server_figures(self, meter: Meter) -> None:
        registry, telemetry = self.registry, self.telemetry
        self.request_duration = DualHistogram(
            "gen_ai.server.request.duration",
            "gen_ai_server_request_duration_seconds",
            "Duration of a generation this daemon made",
            unit="s",
            labels={**_GENAI, "error_type": "error.type"},
            buckets=_SECONDS,
            registry=registry,
            meter=meter,
        )
        self.time_to_first_token = DualHistogram(
            "gen_ai.server.time_to_first_token",
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first generated token (streamed or not)",
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
        self.generated = DualCounter(
            "agl.tokens",
            "agl_tokens",
            "Tokens read and written by the generations this daemon made (each token once fleet-wide)",
            unit="{token}",
            labels={"model": "gen_ai.request.model", "kind": "agl.token.kind", "tier": "agl.tier"},
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
        self._batch_figures(meter)
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

    def _batch_figures(self, meter: Meter) -> None:
        """Figures of the batched decoder (``shared.runtimes.batched``), per model."""
        registry, model = self.registry, {"model": "gen_ai.request.model"}
        self.batch_slots_busy = DualGauge(
            "agl.batch.slots.busy",
            "agl_batch_slots_busy",
            "Decoder slots generating now (at most the model's parallel/concurrency)",
            unit="{sequence}",
            labels=model,
            registry=registry,
            meter=meter,
        )
        self.batch_size = DualHistogram(
            "agl.batch.size",
            "agl_batch_size",
            "Sequences sampled per decode step (the batch a step served)",
            unit="{sequence}",
            labels=model,
            buckets=_SEQUENCES,
            registry=registry,
            meter=meter,
        )
        self.batch_tokens = DualCounter(
            "agl.batch.tokens",
            "agl_batch_tokens",
            "Tokens the decoder read, by phase (prefill: prompt, decode: generated); rate() = tok/s",
            unit="{token}",
            labels={**model, "phase": "agl.batch.phase"},
            registry=registry,
            meter=meter,
        )
        self.batch_queue_wait = DualHistogram(
            "agl.batch.queue.wait",
            "agl_batch_queue_wait_seconds",
            "Time a generation waited for a decoder slot",
            unit="s",
            labels=model,
            buckets=_SECONDS,
            registry=registry,
            meter=meter,
        )

    @contextlib.contextmanager
    def activate(self) -> Iterator[Instruments]:
        """Make these the instruments :func:`record_plugin_error` uses in this context."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)

    def served(
        self,
        attrs: Mapping[str, str],
        seconds: float,
        *,
        input_tokens: int,
        output_tokens: int,
        per_output_token: float | None,
    ) -> None:
        """A generation this daemon made ended well: duration, TPOT and its tokens."""
        labels = _labels(attrs)
        self.request_duration.labels(*labels, "").observe(seconds)
        if per_output_token is not None:
            self.time_per_output_token.labels(*labels).observe(per_output_token)
        model, tier = labels[1], labels[2]
        self.generated.labels(model, "prompt", tier).inc(input_tokens)
        self.generated.labels(model, "completion", tier).inc(output_tokens)

    def called(
        self,
        attrs: Mapping[str, str],
        seconds: float,
        *,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        """A call to another tier ended well: client duration and token usage."""
        labels, server = _labels(attrs), attrs.get("server.address", "")
        self.client_duration.labels(*labels, "", server).observe(seconds)
        self.token_usage.labels(*labels, "input", server).observe(input_tokens)
        self.token_usage.labels(*labels, "output", server).observe(output_tokens)

    def failed(self, attrs: Mapping[str, str], seconds: float, *, error: str, client: bool) -> None:
        """A generation (server) or a call (client) failed with ``error``."""
        if client:
            server = attrs.get("server.address", "")
            self.client_duration.labels(*_labels(attrs), error, server).observe(seconds)
        else:
            self.request_duration.labels(*_labels(attrs), error).observe(seconds)

    def first_token(self, attrs: Mapping[str, str], seconds: float) -> None:
        """Record ``gen_ai.server.time_to_first_token``."""
        self.time_to_first_token.labels(*_labels(attrs)).observe(seconds)

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
        self.watched.append(
            Figure(
                otel_name=otel_name,
                prom_name=(prom_name + "_total" if counter else prom_name) if prom_name else "",
                kind="counter" if counter else "gauge",
                unit=unit,
                labels=(label,),
                attributes=(otel_label,),
                description=description,
            )
        )
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


def _labels(attrs: Mapping[str, str]) -> tuple[str, str, str, str]:
    return (
        attrs.get("gen_ai.operation.name", ""),
        attrs.get("gen_ai.request.model", ""),
        attrs.get("agl.tier", ""),
        attrs.get("gen_ai.provider.name", ""),
    )


def current_instruments() -> Instruments | None:
    """The instruments activated in this context, else the most recently created ones."""
    found = _active.get()
    if found is not None:
        return found
    return _fallback[0] if _fallback else None
