"""One trace across the edge agent (in-process) and a hub in its own process, over real NATS.

Everything is real: nats-server, ``hubctl serve`` with the echo back-end,
the agent with the bundled model, an OTLP/HTTP receiver and a Loki push receiver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.agents import RunningAgent, edge
from tests.fixtures.hubs import hub_process, hub_settings
from tests.fixtures.names import ECHO, MODEL
from tests.fixtures.nats import nats_server as start_nats
from tests.fixtures.waiting import poll
from tests.telemetry.receivers import LokiReceiver, OtlpReceiver, loki_receiver, otlp_receiver

SERVER, CLIENT = 2, 3  # OTLP SpanKind values

FAST = {
    "traces_sample_ratio": 1.0,
    "schedule_delay_s": 0.1,
    "metric_export_interval_s": 0.5,
    "loki_flush_interval_s": 0.2,
    "export_timeout_s": 2.0,
}


def _chat(agent: RunningAgent, model: str, *, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{agent.v1}/chat/completions",
        headers={"x-agl-tier": "cloud"},
        json={
            "model": model,
            "messages": [{"role": "user", "content": "say hi to the hub"}],
            "max_tokens": 16,
            "temperature": 0,
            "stream": stream,
        },
        timeout=60,
    )


@pytest.fixture()
def receivers() -> Iterator[tuple[OtlpReceiver, LokiReceiver]]:
    with otlp_receiver() as otlp, loki_receiver() as loki:
        yield otlp, loki


def test_one_trace_spans_edge_and_hub_processes_with_genai_attributes(
    tmp_path: Path, receivers: tuple[OtlpReceiver, LokiReceiver]
) -> None:
    otlp, loki = receivers
    telemetry = {"endpoint": otlp.url, "loki_url": loki.url, **FAST}
    with start_nats() as nats_server:
        hub_telemetry = {**telemetry, "loki_labels": {"env": "test"}}
        settings = hub_settings(nats_server.url, telemetry=hub_telemetry)
        with (
            hub_process(settings, tmp_path, metrics=True) as hub,
            edge(
                nats_server.url,
                device_id="dev-otel",
                router={"cloud_aliases": {"no-such-model": "no-such-model"}},
                telemetry=telemetry,
            ) as agent,
        ):
            plain = _chat(agent, MODEL, stream=False)
            assert plain.status_code == 200, plain.text
            assert plain.headers["x-agl-tier"] == "cloud"
            streamed = _chat(agent, MODEL, stream=True)
            assert streamed.status_code == 200 and "[DONE]" in streamed.text
            # Unknown cloud model: the hub refuses, the edge warns (inside the trace) and
            # answers locally.
            fallback = _chat(agent, "no-such-model", stream=False)
            assert fallback.headers["x-agl-reason"] == "fallback"

            edge_scrape = httpx.get(f"{agent.url}/metrics").text
            assert hub.settings is not None
            hub_scrape = httpx.get(f"http://127.0.0.1:{hub.settings.metrics_port}/metrics").text
            assert hub.alive()

            def hub_spans_arrived() -> bool:
                return sum(s.resource.get("service.name") == "agl-hub" for s in otlp.spans) >= 2

            assert otlp.wait_for(hub_spans_arrived), [s.name for s in otlp.spans]

    edge_spans = {s.span_id: s for s in otlp.spans if s.resource["service.name"] == "edge-agent"}
    hub_spans = [s for s in otlp.spans if s.resource["service.name"] == "agl-hub"]
    for hub_span in hub_spans[:2]:
        assert hub_span.kind == SERVER
        parent = edge_spans.get(hub_span.parent_span_id)
        assert parent is not None, f"hub span {hub_span.name} has no edge parent"
        assert parent.trace_id == hub_span.trace_id
        assert parent.kind == CLIENT and parent.attributes["agl.tier"] == "cloud"
        assert hub_span.attributes["gen_ai.operation.name"] == "chat"
        assert hub_span.attributes["gen_ai.request.model"] == ECHO
        assert hub_span.attributes["gen_ai.usage.output_tokens"] > 0
        assert hub_span.attributes["gen_ai.response.finish_reasons"]
        assert hub_span.resource["service.instance.id"]
        root = edge_spans[parent.parent_span_id]
        assert root.kind == SERVER and root.name == "POST /v1/chat/completions"
        assert root.attributes["agl.route.reason"] == "policy"
        assert parent.attributes["gen_ai.usage.input_tokens"] > 0
        assert parent.attributes["gen_ai.request.max_tokens"] == 16
        assert parent.attributes["gen_ai.request.temperature"] == 0
        assert "gen_ai.system" not in parent.attributes  # deprecated
        for span in (parent, hub_span):
            assert span.attributes["gen_ai.provider.name"] == "open-autoglm"
            assert span.attributes["gen_ai.response.id"] == hub_span.attributes["agl.request.id"]
        # the edge's call to the hub: a NATS client span naming the server and the subject
        assert parent.attributes["server.address"] == "127.0.0.1"
        assert parent.attributes["server.port"] == int(nats_server.url.rsplit(":", 1)[1])
        subject = parent.attributes["messaging.destination.name"]  # agl.v1.dev.<device>.infer.<m>
        assert subject.startswith("agl.v1.dev.") and subject.endswith(f".infer.{ECHO}")
        assert root.attributes["url.scheme"] == "http"
        assert root.attributes["url.path"] == "/v1/chat/completions"
        assert root.attributes["client.address"] == "127.0.0.1"
    assert edge_spans and next(iter(edge_spans.values())).resource["agl.device.id"] == "dev-otel"
    route_spans = [s for s in edge_spans.values() if s.name == "agl.route"]
    assert route_spans and route_spans[0].attributes["agl.route.reason"] == "policy"
    # The fallback: its route span and its server span tell the final path, and keep the first.
    fell_back = [s for s in route_spans if s.attributes["agl.route.reason"] == "fallback"]
    assert len(fell_back) == 1
    assert fell_back[0].attributes["agl.tier"] == "edge"
    assert fell_back[0].attributes["agl.route.first_tier"] == "cloud"
    assert fell_back[0].attributes["agl.route.first_reason"] == "policy"
    server = edge_spans[fell_back[0].parent_span_id]
    assert (server.attributes["agl.tier"], server.attributes["agl.route.reason"]) == (
        "edge",
        "fallback",
    )

    genai = {
        "gen_ai.client.token.usage",
        "gen_ai.server.request.duration",
        "gen_ai.server.time_to_first_token",
        "agl.escalations",
    }
    assert otlp.wait_for(lambda: genai <= otlp.metric_names), otlp.metric_names
    edge_client = {"gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds"}
    for scrape, expected in (
        (edge_scrape, {*edge_client, "agl_escalations", "agl_circuit_state", "agl_tokens"}),
        (hub_scrape, {"gen_ai_server_request_duration_seconds", "agl_tokens", "agl_queue_depth"}),
    ):
        names = {f.name for f in text_string_to_metric_families(scrape)}
        assert expected <= names, names
        assert "agl_telemetry_dropped" in names
    # The hub is only a server: it records no client figures.
    assert not {
        f.name
        for f in text_string_to_metric_families(hub_scrape)
        if f.name.startswith("gen_ai_client")
    }
    # Each token once: the hub counts the cloud answers' tokens, the edge its local one, and
    # the edge's client view of the cloud tokens equals the hub's count.
    edge_tokens, hub_tokens = _tokens(edge_scrape), _tokens(hub_scrape)
    assert set(edge_tokens) == {("edge", "prompt"), ("edge", "completion")}
    assert set(hub_tokens) == {("cloud", "prompt"), ("cloud", "completion")}
    assert hub_tokens[("cloud", "completion")] == _sample(
        edge_scrape, "gen_ai_client_token_usage_sum", gen_ai_token_type="output"
    )
    assert hub_tokens[("cloud", "prompt")] == _sample(
        edge_scrape, "gen_ai_client_token_usage_sum", gen_ai_token_type="input"
    )

    def warning_with_trace() -> bool:
        return any(
            labels.get("component") == "edge"
            and line.get("trace_id")
            and line["level"] == "warning"
            for labels, line in loki.lines
        )

    try:
        poll(warning_with_trace, 10, "an edge warning with a trace id")
    except AssertionError as exc:
        edge_lines = [line for labels, line in loki.lines if labels.get("component") == "edge"]
        raise AssertionError(f"{exc}; the edge's Loki lines: {edge_lines[:10]}") from None
    trace_ids = {s.trace_id for s in edge_spans.values()}
    for labels, line in loki.lines:
        assert set(labels) <= {"component", "device", "level", "env"}, labels
        assert "trace_id" not in labels
        if labels["component"] == "edge" and "trace_id" in line:
            assert line["trace_id"] in trace_ids
    assert any(
        labels
        == {"component": "hub", "device": labels["device"], "level": "warning", "env": "test"}
        for labels, _ in loki.lines
    )


def _tokens(scrape: str) -> dict[tuple[str, str], float]:
    """``agl_tokens_total`` summed by (tier, kind)."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if sample.name == "agl_tokens_total":
                key = (sample.labels["tier"], sample.labels["kind"])
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _sample(scrape: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
