"""SDK behaviour that needs a real agent: errors it answers, auto routing, streaming, traces."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from openautoglm import Pipeline, Task, TaskFailedError


def test_a_model_no_tier_serves_surfaces_the_agents_404(agent_env: str) -> None:
    pipeline = Pipeline("p").add_task(Task(name="ask", model="no-such-model", input_key="q"))
    with pytest.raises(TaskFailedError) as info:
        pipeline.run(q="hi")
    assert "task 'ask'" in str(info.value)
    assert "answered 404" in str(info.value)
    assert "'no-such-model' does not exist on this agent; available:" in str(info.value)
    assert info.value.cause.status == 404  # type: ignore[attr-defined]
    assert info.value.task == "ask"


@pytest.mark.timeout(240)
def test_auto_lets_the_router_choose_and_the_last_task_streams(agent_env: str) -> None:
    pipeline = Pipeline("p").add_tasks(
        [
            Task(name="clean", func=str.strip, input_key="q", output_key="question"),
            Task(
                name="answer",
                model="auto",
                prompt_template="Answer in one short sentence: {question}",
                output_key="answer",
                max_tokens=24,
                temperature=0,
                stream=True,
            ),
        ]
    )
    pieces = list(pipeline.stream(q="  What is 2+2?  "))
    result = pipeline.last_result
    assert "".join(pieces) == result["answer"] and result["answer"]
    answer = result.task("answer")
    assert answer.tier in ("edge", "cloud")
    assert answer.reason in ("default", "confidence", "load")  # the router chose: no policy
    assert answer.completion_tokens


@pytest.mark.timeout(240)
def test_each_task_gets_a_span_under_the_runs_span(agent_env: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    pipeline = Pipeline("traced").add_tasks(
        [
            Task(name="clean", func=str.strip, input_key="q", output_key="question"),
            Task(name="answer", model="glm-4-plus", input_key="question", max_tokens=8),
        ]
    )
    original = trace._TRACER_PROVIDER  # type: ignore[attr-defined]  # None unless set
    trace._TRACER_PROVIDER = provider  # type: ignore[attr-defined]  # the SDK reads the global one
    try:
        with tracer.start_as_current_span("app"):
            result = pipeline.run(q=" hi ")
    finally:
        trace._TRACER_PROVIDER = original  # type: ignore[attr-defined]
        provider.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    run = spans["pipeline traced"]
    for name in ("pipeline.task clean", "pipeline.task answer"):
        assert spans[name].parent is not None and spans[name].parent.span_id == run.context.span_id
        assert spans[name].context.trace_id == run.context.trace_id
    assert result.trace_id == f"{run.context.trace_id:032x}"
    assert spans["pipeline.task answer"].attributes["agl.route.tier"] == "cloud"
