"""One telemetry setup for both daemons: tracer, meter and logger providers with OTLP export.

    telemetry = setup_telemetry(settings.telemetry, service_name="edge-agent",
                                service_version=__version__, device_id="dev-1", component="edge")
    telemetry.install_logging()        # JSON stderr + OTLP/Loki log shipping
    ...
    telemetry.shutdown()               # flush (bounded by export_timeout_s) and undo

The providers are kept on the :class:`Telemetry` object, not installed as OpenTelemetry's
process globals, so one test process can run several agents with different settings.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from shared.telemetry.config import TelemetryConfig
from shared.telemetry.drops import (
    CountingLogExporter,
    CountingLogProcessor,
    CountingSpanExporter,
    CountingSpanProcessor,
    DropCounter,
)
from shared.telemetry.keep_traces import KeepInterestingTraces, RecordAllSampler
from shared.telemetry.logs import BoundedLokiHandler, LoggingInstall, install_logging

INSTRUMENTATION = "openautoglm"


def _otlp_exporters(cfg: TelemetryConfig) -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
    headers = dict(cfg.headers) or None
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
            OTLPLogExporter as GrpcLogs,
        )
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpans,
        )

        endpoint = cfg.endpoint
        insecure = bool(endpoint and endpoint.startswith("http://"))
        opts: dict[str, Any] = {
            "endpoint": endpoint,
            "insecure": insecure,
            "headers": headers,
            "timeout": cfg.export_timeout_s,
        }
        return GrpcSpans(**opts), GrpcMetrics(**opts), GrpcLogs(**opts)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    t = cfg.export_timeout_s
    return (
        OTLPSpanExporter(endpoint=cfg.signal_url("traces"), headers=headers, timeout=t),
        OTLPMetricExporter(endpoint=cfg.signal_url("metrics"), headers=headers, timeout=t),
        OTLPLogExporter(endpoint=cfg.signal_url("logs"), headers=headers, timeout=t),
    )


class Telemetry:
    """The tracer, meter and log shipping of one process (or one in-process daemon).

    ``Telemetry.disabled()`` gives no-op tracer and meter: no threads, near-zero cost, and an
    incoming ``traceparent`` is still passed on unchanged.
    """

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        component: str,
        device_id: str,
        resource: Resource | None = None,
    ) -> None:
        self.config = config
        self.component = component
        self.device_id = device_id
        self.drops = DropCounter()
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.meter: metrics.Meter = metrics.NoOpMeter(INSTRUMENTATION)
        self._logging: LoggingInstall | None = None
        self._closed = False
        if resource is not None and config.enabled:
            self._start(resource)

    @classmethod
    def disabled(cls, *, component: str = "edge", device_id: str = "") -> Telemetry:
        """Telemetry that records nothing (tests, or no ``[telemetry]`` configured)."""
        return cls(TelemetryConfig(), component=component, device_id=device_id)

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded and exported."""
        return self.tracer_provider is not None

    def _start(self, resource: Resource) -> None:
        cfg = self.config
        span_exporters: list[SpanExporter] = []
        metric_exporters: list[MetricExporter] = []
        log_exporters: list[LogRecordExporter] = []
        if cfg.endpoint is not None:
            spans, metric, logs = _otlp_exporters(cfg)
            span_exporters.append(spans)
            metric_exporters.append(metric)
            log_exporters.append(logs)
        if cfg.console:
            span_exporters.append(ConsoleSpanExporter())
            metric_exporters.append(ConsoleMetricExporter())
            log_exporters.append(ConsoleLogRecordExporter())
        delay_ms = cfg.schedule_delay_s * 1000
        timeout_ms = cfg.export_timeout_s * 1000
        batch = min(cfg.max_export_batch_size, cfg.max_queue_size)

        # Every span is recorded; errors, fallbacks and slow traces are exported at any ratio.
        self.tracer_provider = TracerProvider(
            resource=resource, sampler=RecordAllSampler(cfg.traces_sample_ratio)
        )
        for exporter in span_exporters:
            processor = BatchSpanProcessor(
                CountingSpanExporter(exporter, self.drops),
                max_queue_size=cfg.max_queue_size,
                schedule_delay_millis=delay_ms,
                max_export_batch_size=batch,
                export_timeout_millis=timeout_ms,
            )
            self.tracer_provider.add_span_processor(
                KeepInterestingTraces(
                    CountingSpanProcessor(processor, self.drops, cfg.max_queue_size),
                    slow_s=cfg.slow_trace_s,
                )
            )
        self.tracer = self.tracer_provider.get_tracer(INSTRUMENTATION)

        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(
                exporter,
                export_interval_millis=cfg.metric_export_interval_s * 1000,
                export_timeout_millis=timeout_ms,
            )
            for exporter in metric_exporters
        ]
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        self.meter = self.meter_provider.get_meter(INSTRUMENTATION)

        if log_exporters:
            self.logger_provider = LoggerProvider(resource=resource)
            for log_exporter in log_exporters:
                log_processor = BatchLogRecordProcessor(
                    CountingLogExporter(log_exporter, self.drops),
                    max_queue_size=cfg.max_queue_size,
                    schedule_delay_millis=delay_ms,
                    max_export_batch_size=batch,
                    export_timeout_millis=timeout_ms,
                )
                self.logger_provider.add_log_record_processor(
                    CountingLogProcessor(log_processor, self.drops, cfg.max_queue_size)
                )

    def install_logging(self, logger: logging.Logger | None = None) -> None:
        """JSON logs on stderr, and ship logs over OTLP and/or to Loki (root logger by default).

        Call once per process after ``logging.basicConfig``; :meth:`shutdown` undoes it.
        """
        if self._logging is not None:
            return
        cfg = self.config
        static = {"component": self.component, "device": self.device_id}
        shipped: list[logging.Handler] = []
        if self.logger_provider is not None:
            with warnings.catch_warnings():
                # The SDK's handler is deprecated in favour of a contrib package; it still works.
                warnings.simplefilter("ignore", DeprecationWarning)
                shipped.append(LoggingHandler(logger_provider=self.logger_provider))
        if cfg.loki_url is not None and self.logger_provider is not None:
            logging.getLogger(__name__).warning(
                "logs go both over OTLP to %s and straight to Loki at %s; a collector that "
                "forwards logs to Loki (as deploy/otel-collector.yaml does) stores every line "
                "twice: set loki_url only where no collector ships logs",
                cfg.endpoint,
                cfg.loki_url,
            )
        if cfg.loki_url is not None:
            shipped.append(
                BoundedLokiHandler(
                    cfg.loki_url,
                    labels={**cfg.loki_labels, **static},
                    flush_interval_s=cfg.loki_flush_interval_s,
                    timeout_s=cfg.export_timeout_s,
                    max_queue=cfg.max_queue_size,
                    drops=self.drops,
                )
            )
        self._logging = install_logging(
            logger or logging.getLogger(),
            static=static,
            json_stderr=cfg.json_logs,
            shipped=shipped,
            info_ratio=cfg.info_log_sample_ratio,
        )

    def shutdown(self) -> None:
        """Flush and stop every exporter at once; the whole takes at most ``export_timeout_s``.

        Each signal flushes on its own thread, so a hanging collector costs one timeout, not
        one per signal; what is still unsent after the deadline is abandoned. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        steps: list[Callable[[], object]] = []
        if self._logging is not None:
            steps.append(self._logging.undo)
            self._logging = None
        steps += [
            provider.shutdown
            for provider in (self.tracer_provider, self.logger_provider, self.meter_provider)
            if provider is not None
        ]
        workers = [
            threading.Thread(target=_quietly, args=(step,), name="agl-telemetry-flush", daemon=True)
            for step in steps
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + self.config.export_timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.tracer = trace.NoOpTracer()


def _quietly(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as exc:  # a dead collector must not break shutdown
        logging.getLogger(__name__).warning("telemetry shutdown: %s", exc)


def setup_telemetry(
    config: TelemetryConfig,
    *,
    service_name: str,
    service_version: str,
    device_id: str,
    component: str,
) -> Telemetry:
    """Build the providers for one daemon; off (no-op) when ``config`` exports nowhere.

    Resource attributes: ``service.name``, ``service.version``, ``service.instance.id`` and
    ``agl.device.id`` (both the device id), ``agl.component`` (edge or hub).
    """
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": service_version,
            "service.instance.id": device_id,
            "agl.device.id": device_id,
            "agl.component": component,
        }
    )
    return Telemetry(config, component=component, device_id=device_id, resource=resource)
