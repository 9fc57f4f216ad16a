"""OpenTelemetry for both daemons: traces, metrics and logs over OTLP, Prometheus and Loki.

Modules: ``config`` (:class:`TelemetryConfig`), ``providers`` (:func:`setup_telemetry`,
:class:`Telemetry`), ``dual`` (:class:`DualCounter`, :class:`DualHistogram`, :class:`DualGauge`:
one figure, exported to both OTel and Prometheus), ``instruments`` (every figure both daemons
export), ``genai`` (:class:`GenAiCall`: a generation's span and metrics), ``spans``
(:func:`plugin_span`, :func:`record_plugin_error`, trace context in NATS headers), ``logs``
(JSON lines, sampling, Loki), ``drops`` (counting what full queues and failed exports lost).
"""

from shared.telemetry.config import TelemetryConfig
from shared.telemetry.dual import DualCounter, DualGauge, DualHistogram
from shared.telemetry.genai import GenAiCall, operation_for
from shared.telemetry.instruments import CIRCUIT_STATES, Instruments, current_instruments
from shared.telemetry.providers import Telemetry, setup_telemetry
from shared.telemetry.spans import (
    current_tracer,
    extract_context,
    inject_headers,
    plugin_span,
    record_plugin_error,
)

__all__ = [
    "CIRCUIT_STATES",
    "DualCounter",
    "DualGauge",
    "DualHistogram",
    "GenAiCall",
    "Instruments",
    "Telemetry",
    "TelemetryConfig",
    "current_instruments",
    "current_tracer",
    "extract_context",
    "inject_headers",
    "operation_for",
    "plugin_span",
    "record_plugin_error",
    "setup_telemetry",
]
