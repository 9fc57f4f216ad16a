"""One trace across the edge agent (in-process) and a hub in its own process, over real NATS.

Everything is real: nats-server, ``python -m cloud_hub.cli serve`` with the echo back-end,
the agent with the bundled model, an OTLP/HTTP receiver and a Loki push receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.embedded_nats import embedded_nats, free_port
from tests.agent_server import RunningAgent, run_agent
from tests.telemetry.receivers import LokiReceiver, OtlpReceiver, loki_receiver, otlp_receiver

MODEL = "smollm2-135m-instruct"
ECHO = "echo-test"
SERVER, CLIENT = 2, 3  # OTLP SpanKind values

FAST = {
    "traces_sample_ratio": 1.0,
    "schedule_delay_s": 0.1,
    "metric_export_interval_s": 0.5,
    "loki_flush_interval_s": 0.2,
    "export_timeout_s": 2.0,
}


async def _wait_serving(url: str, model: str, timeout: float = 30.0) -> None:
    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await nc.request(f"agl.v1.infer.{model}", b"probe", timeout=2)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


@contextlib.contextmanager
def hub_process(
    tmp_path: Path, nats_url: str, otlp: str, loki: str, metrics_port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m cloud_hub.cli serve`` with an echo model and telemetry to the receivers."""
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[[models]]\nname = "{ECHO}"\nbackend = "echo"\n\n[telemetry]\n'
        f'endpoint = "{otlp}"\nloki_url = "{loki}"\nloki_labels = {{ env = "test" }}\n'
        + "".join(f"{k} = {v}\n" for k, v in FAST.items())
    )
    args = ["serve", "--nats-url", nats_url, "--config", str(config)]
    with (tmp_path / "hub.log").open("wb") as log:  # JSON lines, for a failing test's reader
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloud_hub.cli", *args, "--metrics-port", str(metrics_port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
    hub_metrics_port = free_port()
    with (
        embedded_nats() as nats_server,
        hub_process(tmp_path, nats_server.url, otlp.url, loki.url, hub_metrics_port) as hub,
    ):
        asyncio.run(_wait_serving(nats_server.url, ECHO))
        with run_agent(
            None,
            device_id="dev-otel",
            hub={"nats_url": nats_server.url},
            router={
                "default_cloud_model": ECHO,
                "cloud_aliases": {"no-such-model": "no-such-model"},
            },
            telemetry={"endpoint": otlp.url, "loki_url": loki.url, **FAST},
        ) as agent:
            uplink = agent.state.uplink
            assert uplink is not None
            deadline = time.monotonic() + 10
            while not uplink.connected and time.monotonic() < deadline:
                time.sleep(0.05)
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
            hub_scrape = httpx.get(f"http://127.0.0.1:{hub_metrics_port}/metrics").text
        assert hub.poll() is None

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
        assert parent.attributes["messaging.destination.name"] == f"agl.v1.infer.{ECHO}"
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

    deadline = time.monotonic() + 10
    while not warning_with_trace() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert warning_with_trace(), loki.lines[:5]
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
