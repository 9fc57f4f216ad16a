"""``TelemetryConfig``: the ``[telemetry]`` table of both the edge's and the hub's settings.

[telemetry]
endpoint = "http://otel-collector:4318"   # OTLP; empty = no export (off, or console only)
protocol = "http"                          # or "grpc" (then usually port 4317)
traces_sample_ratio = 0.1                  # parent-based: a sampled caller stays sampled
info_log_sample_ratio = 0.1                # INFO/DEBUG lines shipped; warnings+ always
loki_url = "http://loki:3100/loki/api/v1/push"
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Label values that differ per request would explode Loki's index; refuse the usual suspects.
_UNBOUNDED_LABELS = frozenset({"trace_id", "span_id", "request_id", "id", "message", "timestamp"})


class TelemetryConfig(BaseModel):
    """Traces, metrics and logs of one process: where they go and how much of them.

    With no ``endpoint``, ``console`` off and no ``loki_url`` telemetry is off: no SDK threads,
    no-op tracer and meter (Prometheus ``/metrics`` still works). Export never blocks a
    request: queues are bounded and full queues drop (counted in ``agl_telemetry_dropped_total``).
    """

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        None,
        description="OTLP collector base URL, e.g. http://otel-collector:4318 (http) or "
        "http://otel-collector:4317 (grpc); empty = no OTLP export.",
    )
    protocol: Literal["http", "grpc"] = Field(
        "http", description="OTLP transport: http (protobuf over HTTP) or grpc."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra OTLP request headers (e.g. an auth token)."
    )
    console: bool = Field(
        False, description="Also print spans, metrics and log records to stdout (debugging)."
    )
    traces_sample_ratio: float = Field(
        0.1,
        ge=0.1,
        le=1.0,
        description="Share of new traces exported, 0.1–1.0, decided by trace id (edge and hub "
        "agree); a request that arrives with a sampled traceparent is always exported, and so is "
        "any trace with an error, a fallback or local error, or a span slower than slow_trace_s.",
    )
    slow_trace_s: float = Field(
        5.0,
        gt=0,
        description="A trace with a span at least this slow (seconds) is exported whatever the ratio.",
    )
    info_log_sample_ratio: float = Field(
        0.1,
        ge=0.05,
        le=0.2,
        description="Share of INFO/DEBUG log lines shipped to OTLP/Loki, 0.05–0.2 (lines of one "
        "trace are kept or dropped together); WARNING and above are always shipped.",
    )
    loki_url: str | None = Field(
        None,
        description="Loki push URL, e.g. http://loki:3100/loki/api/v1/push; empty = no Loki.",
    )
    loki_labels: dict[str, str] = Field(
        default_factory=dict,
        description='Extra static Loki labels (e.g. env = "prod"); component, device and level '
        "are always set. Keep values bounded: ids belong in the line, not in labels.",
    )
    loki_flush_interval_s: float = Field(
        2.0, gt=0, le=60, description="How often buffered log lines are pushed to Loki."
    )
    json_logs: bool = Field(
        True, description="Write logs to stderr as one JSON object per line, with trace ids."
    )
    export_timeout_s: float = Field(
        3.0, gt=0, le=60, description="Deadline of one OTLP or Loki export call."
    )
    metric_export_interval_s: float = Field(
        15.0, ge=0.1, le=3600, description="How often metrics are pushed over OTLP."
    )
    max_queue_size: int = Field(
        2048, ge=16, le=1_000_000, description="Spans or log records buffered before drops start."
    )
    max_export_batch_size: int = Field(
        512, ge=1, le=100_000, description="Spans or log records per export call."
    )
    schedule_delay_s: float = Field(
        1.0, gt=0, le=60, description="Longest wait before buffered spans/logs are exported."
    )

    @field_validator("endpoint", "loki_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"must be an http:// or https:// URL, e.g. http://otel-collector:4318 (got {value!r})"
            )
        return value

    @field_validator("loki_labels")
    @classmethod
    def _bounded_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(_LABEL_NAME, name):
                raise ValueError(f"Loki label {name!r} must match {_LABEL_NAME}")
            if name in _UNBOUNDED_LABELS:
                raise ValueError(
                    f"Loki label {name!r} would take a new value on every line; "
                    "it is already in the JSON line, query it with `| json`"
                )
        return value

    @property
    def enabled(self) -> bool:
        """Whether the OpenTelemetry SDK runs at all (an exporter is configured)."""
        return self.endpoint is not None or self.console or self.loki_url is not None

    def signal_url(self, signal: Literal["traces", "metrics", "logs"]) -> str:
        """The OTLP/HTTP URL of one signal, e.g. ``http://collector:4318/v1/traces``."""
        if self.endpoint is None:
            raise ValueError("no OTLP endpoint configured; set telemetry.endpoint")
        return f"{self.endpoint}/v1/{signal}"
