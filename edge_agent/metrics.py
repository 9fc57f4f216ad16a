"""Metrics of one agent, each written once and exported to Prometheus and over OTLP.

A private registry and the agent's own meter, so tests can run several apps in one process.
``genai`` holds the GenAI and fleet figures shared with the hub. Every figure, with its
OpenTelemetry and Prometheus names, is listed in :mod:`shared.telemetry.instruments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from shared.telemetry import DualCounter, DualGauge, DualHistogram, Instruments, Telemetry

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_NLL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5)
_MODEL = {"model": "gen_ai.request.model"}


@dataclass
class AgentMetrics:
    """Every metric the agent exports on ``/metrics`` and over OTLP.

    Time to first token is ``genai.time_to_first_token`` (``gen_ai.server.time_to_first_token``).
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    telemetry: Telemetry = field(default_factory=Telemetry.disabled)

    def __post_init__(self) -> None:
        r, meter = self.registry, self.telemetry.meter
        self.genai = Instruments(self.telemetry, r)
        self.requests = DualCounter(
            "agl.http.requests",
            "agl_http_requests",
            "HTTP requests answered",
            unit="{request}",
            labels={
                "route": "http.route",
                "status": "http.response.status_code",
                "tier": "agl.tier",
                "reason": "agl.route.reason",
            },
            registry=r,
            meter=meter,
        )
        self.request_duration = DualHistogram(
            "agl.http.request.duration",
            "agl_http_request_duration_seconds",
            "HTTP request latency",
            unit="s",
            labels={"route": "http.route"},
            buckets=_LATENCY_BUCKETS,
            registry=r,
            meter=meter,
        )
        self.queue_depth = DualGauge(
            "agl.queue.depth",
            "agl_queue_depth",
            "Generations waiting or running",
            unit="{request}",
            labels=_MODEL,
            registry=r,
            meter=meter,
        )
        self.rejected = DualCounter(
            "agl.queue.rejected",
            "agl_queue_rejected",
            "Requests refused because the queue was full",
            unit="{request}",
            labels=_MODEL,
            registry=r,
            meter=meter,
        )
        self.cancelled = DualCounter(
            "agl.generations.cancelled",
            "agl_generations_cancelled",
            "Generations stopped early (disconnect, timeout)",
            unit="{generation}",
            labels={**_MODEL, "why": "agl.cancel.reason"},
            registry=r,
            meter=meter,
        )
        self.decisions = DualCounter(
            "agl.route.decisions",
            "agl_route_decisions",
            "Routing decisions by tier and reason",
            unit="{decision}",
            labels={"tier": "agl.tier", "reason": "agl.route.reason"},
            registry=r,
            meter=meter,
        )
        self.cloud_failures = DualCounter(
            "agl.cloud.failures",
            "agl_cloud_failures",
            "Escalations the hub could not answer (served locally)",
            unit="{failure}",
            labels={"kind": "error.type"},
            registry=r,
            meter=meter,
        )
        self.cascade_nll = DualHistogram(
            "agl.cascade.nll",
            "agl_cascade_nll",
            "Mean negative token logprob the cascade judged (its score, negated: never negative)",
            unit="1",
            buckets=_NLL_BUCKETS,
            registry=r,
            meter=meter,
        )
        self.model_ready = DualGauge(
            "agl.model.ready",
            "agl_model_ready",
            "1 when every model is loaded",
            unit="1",
            registry=r,
            meter=meter,
        )
