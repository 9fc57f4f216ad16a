"""Dual instruments: one call shows up once in Prometheus and once in OTel, with the same figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.metrics import AgentMetrics
from shared.telemetry import (
    DualCounter,
    DualGauge,
    DualHistogram,
    GenAiCall,
    Instruments,
    Telemetry,
)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """Stands in for the OTLP metric exporter: keeps what the meter would have pushed."""
    return InMemoryMetricReader()


@pytest.fixture
def telemetry(reader: InMemoryMetricReader) -> Iterator[Telemetry]:
    """Telemetry whose meter feeds ``reader`` (no collector, no export threads)."""
    telemetry = Telemetry.disabled()
    telemetry.meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.meter = telemetry.meter_provider.get_meter("test")
    yield telemetry
    telemetry.shutdown()


def otel_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point the reader collects now, by OTel metric name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def prom_samples(
    registry: CollectorRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every Prometheus sample as scraped from ``/metrics``, by name and sorted labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_labelled_inc_shows_up_once_on_each_side_with_matching_attributes(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    registry = CollectorRegistry()
    decisions = DualCounter(
        "agl.route.decisions",
        "agl_route_decisions",
        "Routing decisions",
        unit="{decision}",
        labels={"tier": "agl.tier", "reason": "agl.route.reason"},
        registry=registry,
        meter=telemetry.meter,
    )
    decisions.labels("cloud", "policy").inc()

    samples = {
        k: v for k, v in prom_samples(registry).items() if k[0] == "agl_route_decisions_total"
    }
    assert samples == {
        ("agl_route_decisions_total", (("reason", "policy"), ("tier", "cloud"))): 1.0
    }
    (point,) = otel_points(reader)["agl.route.decisions"]
    assert point.value == 1
    assert dict(point.attributes) == {"agl.tier": "cloud", "agl.route.reason": "policy"}


def test_counts_agree_after_many_calls_and_keyword_labels(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    registry = CollectorRegistry()
    tokens = DualCounter(
        "agl.tokens",
        "agl_tokens",
        "Tokens",
        unit="{token}",
        labels={"model": "gen_ai.request.model", "kind": "agl.token.kind"},
        registry=registry,
        meter=telemetry.meter,
    )
    for _ in range(3):
        tokens.labels("m", "prompt").inc(5)
    tokens.labels(model="m", kind="completion").inc(7)

    assert registry.get_sample_value("agl_tokens_total", {"model": "m", "kind": "prompt"}) == 15
    assert registry.get_sample_value("agl_tokens_total", {"model": "m", "kind": "completion"}) == 7
    otel = {p.attributes["agl.token.kind"]: p.value for p in otel_points(reader)["agl.tokens"]}
    assert otel == {"prompt": 15, "completion": 7}


def test_labels_returns_the_cached_child_so_the_hot_path_builds_nothing(
    telemetry: Telemetry,
) -> None:
    counter = DualCounter(
        "x.hits",
        "x_hits",
        "Hits",
        unit="{hit}",
        labels={"route": "http.route"},
        registry=CollectorRegistry(),
        meter=telemetry.meter,
    )
    child = counter.labels("/v1/chat")
    assert counter.labels("/v1/chat") is child
    assert counter.labels(route="/v1/chat") is child
    assert child._attrs is counter.labels("/v1/chat")._attrs


def test_histogram_counts_sums_and_buckets_agree(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    registry = CollectorRegistry()
    latency = DualHistogram(
        "agl.http.request.duration",
        "agl_http_request_duration_seconds",
        "Latency",
        unit="s",
        labels={"route": "http.route"},
        buckets=(0.1, 1, 10),
        registry=registry,
        meter=telemetry.meter,
    )
    for value in (0.05, 0.1, 0.5, 3.0, 20.0):
        latency.labels("/v1/chat").observe(value)

    labels = {"route": "/v1/chat"}
    name = "agl_http_request_duration_seconds"
    (point,) = otel_points(reader)["agl.http.request.duration"]
    assert isinstance(point, HistogramDataPoint)
    assert dict(point.attributes or {}) == {"http.route": "/v1/chat"}
    assert point.count == registry.get_sample_value(f"{name}_count", labels) == 5
    assert point.sum == pytest.approx(registry.get_sample_value(f"{name}_sum", labels))
    assert list(point.explicit_bounds) == [0.1, 1.0, 10.0]
    cumulative = [sum(point.bucket_counts[: i + 1]) for i in range(len(point.bucket_counts))]
    prom_buckets = [
        registry.get_sample_value(f"{name}_bucket", {**labels, "le": le})
        for le in ("0.1", "1.0", "10.0", "+Inf")
    ]
    assert cumulative == prom_buckets == [2, 3, 4, 5]


def test_gauge_values_agree_and_the_last_set_value_stays_between_collections(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    registry = CollectorRegistry()
    depth = DualGauge(
        "agl.queue.depth",
        "agl_queue_depth",
        "Queue depth",
        unit="{request}",
        labels={"model": "gen_ai.request.model"},
        registry=registry,
        meter=telemetry.meter,
    )
    depth.labels("a").set(3)
    depth.labels("a").set(2)
    depth.labels("b").set(7)

    for _ in range(2):  # cumulative: a second export still carries the value
        otel = {
            p.attributes["gen_ai.request.model"]: p.value
            for p in otel_points(reader)["agl.queue.depth"]
        }
        assert otel == {"a": 2, "b": 7}
    assert registry.get_sample_value("agl_queue_depth", {"model": "a"}) == 2
    assert registry.get_sample_value("agl_queue_depth", {"model": "b"}) == 7


def test_label_less_forms_record_on_both_sides_without_attributes(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    registry = CollectorRegistry()
    kw: dict[str, Any] = {"registry": registry, "meter": telemetry.meter}
    ready = DualGauge("agl.model.ready", "agl_model_ready", "Ready", unit="1", **kw)
    starts = DualCounter("x.starts", "x_starts", "Starts", unit="{start}", **kw)
    size = DualHistogram("x.size", "x_size", "Size", unit="By", buckets=(10, 100), **kw)
    ready.set(1)
    starts.inc()
    starts.inc(2)
    size.observe(50)

    points = otel_points(reader)
    assert [(p.value, dict(p.attributes)) for p in points["agl.model.ready"]] == [(1, {})]
    assert [(p.value, dict(p.attributes)) for p in points["x.starts"]] == [(3, {})]
    assert [(p.count, p.sum) for p in points["x.size"]] == [(1, 50)]
    assert registry.get_sample_value("agl_model_ready") == 1
    assert registry.get_sample_value("x_starts_total") == 3
    assert registry.get_sample_value("x_size_count") == 1


def test_misuse_fails_like_prometheus_client_and_records_nothing(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    kw: dict[str, Any] = {"registry": CollectorRegistry(), "meter": telemetry.meter}
    labelled = DualCounter("x.a", "x_a", "A", unit="1", labels={"kind": "error.type"}, **kw)
    plain = DualGauge("x.b", "x_b", "B", unit="1", **kw)
    with pytest.raises(ValueError, match=r"call \.labels"):
        labelled.inc()
    with pytest.raises(ValueError, match="labels are"):
        labelled.labels("a", "b")
    with pytest.raises(ValueError, match="labels are"):
        labelled.labels(why="x")
    with pytest.raises(ValueError, match="no labels"):
        plain.labels("x")
    with pytest.raises(ValueError):  # Prometheus refuses negative counter increments
        labelled.labels("e").inc(-1)
    assert "x.a" not in otel_points(reader)


def test_an_empty_label_value_is_left_out_of_the_otel_attributes(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    instruments = Instruments(telemetry, CollectorRegistry())
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "agl.tier": "edge",
        "gen_ai.provider.name": "open-autoglm",
    }
    instruments.served(attrs, 0.2, input_tokens=1, output_tokens=1, per_output_token=None)
    instruments.failed(attrs, 0.4, error="timeout", client=False)

    points = otel_points(reader)["gen_ai.server.request.duration"]
    assert sorted(p.attributes.get("error.type", "") for p in points) == ["", "timeout"]
    assert all(dict(p.attributes).items() >= attrs.items() for p in points)
    ok = {
        "gen_ai_operation_name": "chat",
        "gen_ai_request_model": "m",
        "agl_tier": "edge",
        "gen_ai_provider_name": "open-autoglm",
    }
    name = "gen_ai_server_request_duration_seconds_count"
    assert instruments.registry.get_sample_value(name, {**ok, "error_type": ""}) == 1
    assert instruments.registry.get_sample_value(name, {**ok, "error_type": "timeout"}) == 1


def test_a_genai_call_records_each_figure_once_on_each_side(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    instruments = Instruments(telemetry, CollectorRegistry())
    call = GenAiCall.start(instruments, "chat", request_model="m", tier="edge")
    call.first_token()
    call.finish(response_model="m", input_tokens=12, output_tokens=5, finish_reason="stop")
    client = GenAiCall.start(
        instruments,
        "chat",
        request_model="big",
        tier="cloud",
        kind=SpanKind.CLIENT,
        server_address="nats.example",
        server_port=4222,
    )
    client.first_token()
    client.finish(response_model="big", input_tokens=7, output_tokens=3, finish_reason="stop")
    instruments.escalation("policy")
    instruments.plugin_error("pii", "timeout")

    points = otel_points(reader)
    prom = instruments.registry
    provider = {"gen_ai_provider_name": "open-autoglm"}
    genai = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "m", "agl_tier": "edge"}
    genai |= provider
    # The generation made here: server figures and the tokens it generated, once.
    generated = {p.attributes["agl.token.kind"]: p.value for p in points["agl.tokens"]}
    assert generated == {"prompt": 12, "completion": 5}
    for kind, count in generated.items():
        labels = {"model": "m", "kind": kind, "tier": "edge"}
        assert prom.get_sample_value("agl_tokens_total", labels) == count
    for otel, prom_name in (
        ("gen_ai.server.request.duration", "gen_ai_server_request_duration_seconds"),
        ("gen_ai.server.time_to_first_token", "gen_ai_server_time_to_first_token_seconds"),
        ("gen_ai.server.time_per_output_token", "gen_ai_server_time_per_output_token_seconds"),
    ):
        (point,) = points[otel]
        labels = {**genai, "error_type": ""} if "duration" in otel else genai
        assert point.count == prom.get_sample_value(f"{prom_name}_count", labels) == 1
        assert point.sum == pytest.approx(prom.get_sample_value(f"{prom_name}_sum", labels))
    # The call to another tier: client figures with server.address, and no server figures.
    client_labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_request_model": "big",
        "agl_tier": "cloud",
        **provider,
        "server_address": "nats.example",
    }
    usage = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert usage == {"input": 7, "output": 3}
    assert all(
        p.attributes["server.address"] == "nats.example"
        for p in points["gen_ai.client.token.usage"]
    )
    for kind, count in usage.items():
        labels = {**client_labels, "gen_ai_token_type": kind}
        assert prom.get_sample_value("gen_ai_client_token_usage_sum", labels) == count
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.count == 1 and duration.attributes["gen_ai.request.model"] == "big"
    assert all(p.attributes["gen_ai.request.model"] == "m" for p in points["agl.tokens"])
    assert [(p.value, dict(p.attributes)) for p in points["agl.escalations"]] == [
        (1, {"agl.route.reason": "policy"})
    ]
    assert prom.get_sample_value("agl_escalations_total", {"reason": "policy"}) == 1
    assert [(p.value, dict(p.attributes)) for p in points["agl.plugin.errors"]] == [
        (1, {"agl.plugin.name": "pii", "error.type": "timeout"})
    ]
    assert (
        prom.get_sample_value("agl_plugin_errors_total", {"plugin": "pii", "kind": "timeout"}) == 1
    )


def test_every_agent_figure_appears_under_its_otel_and_prometheus_names(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    metrics = AgentMetrics(telemetry=telemetry)
    metrics.requests.labels("/v1/chat/completions", "200", "edge", "default").inc()
    metrics.request_duration.labels("/v1/chat/completions").observe(0.3)
    metrics.queue_depth.labels("m").set(2)
    metrics.rejected.labels("all").inc()
    metrics.cancelled.labels("m", "timeout").inc()
    metrics.decisions.labels("cloud", "policy").inc()
    metrics.cloud_failures.labels("timeout").inc()
    metrics.cascade_nll.observe(0.6)
    metrics.model_ready.set(1)
    assert not hasattr(metrics, "ttft")  # the GenAI time to first token is the one TTFT

    points = otel_points(reader)
    samples = prom_samples(metrics.registry)
    expected = {
        "agl.http.requests": (
            "agl_http_requests_total",
            {
                "http.route": "/v1/chat/completions",
                "http.response.status_code": "200",
                "agl.tier": "edge",
                "agl.route.reason": "default",
            },
            1,
        ),
        "agl.http.request.duration": (
            "agl_http_request_duration_seconds_count",
            {"http.route": "/v1/chat/completions"},
            1,
        ),
        "agl.queue.depth": ("agl_queue_depth", {"gen_ai.request.model": "m"}, 2),
        "agl.queue.rejected": ("agl_queue_rejected_total", {"gen_ai.request.model": "all"}, 1),
        "agl.generations.cancelled": (
            "agl_generations_cancelled_total",
            {"gen_ai.request.model": "m", "agl.cancel.reason": "timeout"},
            1,
        ),
        "agl.route.decisions": (
            "agl_route_decisions_total",
            {"agl.tier": "cloud", "agl.route.reason": "policy"},
            1,
        ),
        "agl.cloud.failures": ("agl_cloud_failures_total", {"error.type": "timeout"}, 1),
        "agl.cascade.nll": ("agl_cascade_nll_count", {}, 1),
        "agl.model.ready": ("agl_model_ready", {}, 1),
    }
    for otel_name, (prom_name, attributes, value) in expected.items():
        (point,) = points[otel_name]
        assert dict(point.attributes) == attributes, otel_name
        otel_value = point.count if isinstance(point, HistogramDataPoint) else point.value
        assert otel_value == pytest.approx(value), otel_name
        (prom_value,) = [v for (name, _), v in samples.items() if name == prom_name]
        assert prom_value == pytest.approx(value), prom_name
    assert not any(name.startswith("agl_time_to_first_token") for name, _ in samples)


def test_the_cascade_score_goes_out_as_one_positive_figure(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    metrics = AgentMetrics(telemetry=telemetry)
    for nll in (0.05, 0.6, 2.5, 9.0, 0.0):
        metrics.cascade_nll.observe(nll)

    (point,) = otel_points(reader)["agl.cascade.nll"]
    assert point.count == 5 and point.sum == pytest.approx(12.15)
    assert metrics.registry.get_sample_value("agl_cascade_nll_count") == 5
    assert metrics.registry.get_sample_value("agl_cascade_nll_sum") == pytest.approx(12.15)
    assert list(point.explicit_bounds) == [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5]
