"""Prometheus metrics of one agent (a private registry, so tests can run several apps).

``genai`` holds the GenAI and fleet metrics shared with the hub; they are also recorded on
the agent's OpenTelemetry meter (see ``shared.telemetry.instruments``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.telemetry import Instruments, Telemetry

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class AgentMetrics:
    """Every metric the agent exports on ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    telemetry: Telemetry = field(default_factory=Telemetry.disabled)

    def __post_init__(self) -> None:
        r = self.registry
        self.genai = Instruments(self.telemetry, r)
        self.requests = Counter(
            "agl_http_requests",
            "HTTP requests answered",
            ["route", "status", "tier", "reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "agl_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("agl_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.ttft = Histogram(
            "agl_time_to_first_token_seconds",
            "Time to first streamed token",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "agl_queue_depth", "Generations waiting or running", ["model"], registry=r
        )
        self.rejected = Counter(
            "agl_queue_rejected",
            "Requests refused because the queue was full",
            ["model"],
            registry=r,
        )
        self.cancelled = Counter(
            "agl_generations_cancelled",
            "Generations stopped early (disconnect, timeout)",
            ["model", "why"],
            registry=r,
        )
        self.decisions = Counter(
            "agl_route_decisions",
            "Routing decisions by tier and reason",
            ["tier", "reason"],
            registry=r,
        )
        self.cloud_failures = Counter(
            "agl_cloud_failures",
            "Escalations the hub could not answer (served locally)",
            ["kind"],
            registry=r,
        )
        self.cascade_score = Histogram(
            "agl_cascade_score",
            "Mean token logprob judged by the cascade",
            buckets=(-5, -3, -2, -1.5, -1, -0.75, -0.5, -0.25, -0.1, 0),
            registry=r,
        )
        self.model_ready = Gauge("agl_model_ready", "1 when every model is loaded", registry=r)
