"""At a 10 % ratio, error, fallback and slow traces are still exported, whole; the rest by ratio."""

from __future__ import annotations

import time

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from shared.telemetry.keep_traces import KeepInterestingTraces, RecordAllSampler
from tests.fixtures.agents import run_agent
from tests.fixtures.names import MODEL
from tests.telemetry.receivers import closed_port_url, otlp_receiver


def test_interesting_traces_are_kept_whole_and_plain_ones_by_ratio() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=RecordAllSampler(0.1))
    provider.add_span_processor(KeepInterestingTraces(SimpleSpanProcessor(exporter), slow_s=0.05))
    tracer = provider.get_tracer("t")
    marked: dict[int, int] = {}  # root number -> trace id
    for i in range(60):
        with (
            tracer.start_as_current_span(f"root{i}") as root,
            tracer.start_as_current_span("child") as child,
        ):
            if i == 7:
                child.set_status(Status(StatusCode.ERROR, "boom"))
            elif i == 8:
                child.set_attribute("agl.route.reason", "fallback")
            elif i == 9:
                time.sleep(0.06)
            if i in (7, 8, 9):
                marked[i] = root.get_span_context().trace_id
    spans = exporter.get_finished_spans()
    by_trace: dict[int, list[str]] = {}
    for span in spans:
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span.name)
    for why, trace_id in marked.items():
        assert sorted(by_trace[trace_id]) == sorted(
            ["child", f"root{[7, 8, 9][list(marked).index(why)]}"]
        ), why
    assert len(by_trace) < 60  # the plain traces went by the ratio
    assert all(len(names) == 2 for names in by_trace.values())  # never half a trace


def test_an_agent_at_ten_percent_exports_its_fallback_trace() -> None:
    telemetry = {"traces_sample_ratio": 0.1, "schedule_delay_s": 0.05}
    plain = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with (
        otlp_receiver() as otlp,
        run_agent(
            None,
            hub={"nats_url": closed_port_url().replace("http://", "nats://")},
            telemetry={"endpoint": otlp.url, **telemetry},
        ) as agent,
    ):
        for _ in range(10):
            assert httpx.post(f"{agent.v1}/chat/completions", json=plain, timeout=60).is_success
        resp = httpx.post(
            f"{agent.v1}/chat/completions",
            json=plain,
            headers={"x-agl-tier": "cloud"},
            timeout=30,
        )
        assert resp.headers["x-agl-reason"] == "fallback"

        def fallback_trace() -> bool:
            return any(
                s.name == "agl.route" and s.attributes.get("agl.route.reason") == "fallback"
                for s in otlp.spans
            )

        assert otlp.wait_for(fallback_trace), [s.name for s in otlp.spans]
    route = next(s for s in otlp.spans if s.attributes.get("agl.route.reason") == "fallback")
    names = {s.name for s in otlp.spans if s.trace_id == route.trace_id}
    assert {"POST /v1/chat/completions", "agl.route"} <= names
