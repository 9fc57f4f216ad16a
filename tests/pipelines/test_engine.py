"""The pipeline engine with function tasks and a stand-in for the agent (no model, no network)."""

from __future__ import annotations

import threading
import time

import pytest

from openautoglm import (
    AgentUnreachableError,
    MissingInputError,
    Pipeline,
    PipelineBuildError,
    Task,
    TaskFailedError,
)
from shared.pipelines import ModelReply, ModelRequest


async def echo_agent(req: ModelRequest) -> ModelReply:
    """Stands in for an agent: answers with the prompt, served at the edge."""
    if req.on_piece is not None:
        for word in req.messages[-1]["content"].split():
            req.on_piece(word + " ")
    return ModelReply(text=req.messages[-1]["content"], tier="edge", reason="default")


def test_a_template_field_that_no_input_provides_fails_when_the_task_is_built() -> None:
    with pytest.raises(PipelineBuildError, match=r"task 'summary'.*\['nope'\].*\['cleaned'\]"):
        Task(
            name="summary",
            model="glm-4-plus",
            prompt_template="Summarise {nope}",
            input_key="cleaned",
            output_key="s",
        )


def test_two_producers_of_one_key_name_both_tasks_and_the_key() -> None:
    pipeline = Pipeline("p").add_task(Task(name="a", func=str, input_key="x", output_key="y"))
    with pytest.raises(PipelineBuildError, match=r"'a' and 'b' both write key 'y'"):
        pipeline.add_task(Task(name="b", func=str, input_key="x", output_key="y"))
    assert [t.name for t in pipeline.tasks] == ["a"]  # a refused task is not added


def test_a_cycle_is_refused_with_its_tasks_and_keys() -> None:
    with pytest.raises(PipelineBuildError, match=r"cycle: 'a' -\('y'\)-> 'b' -\('x'\)-> 'a'"):
        Pipeline("p").add_tasks(
            [
                Task(name="a", func=str, input_key="x", output_key="y"),
                Task(name="b", func=str, input_key="y", output_key="x"),
            ]
        )


def test_a_declared_input_list_finds_a_missing_key_at_build_time() -> None:
    with pytest.raises(PipelineBuildError, match=r"'raw' read by clean"):
        Pipeline("p", inputs=["text"]).add_task(
            Task(name="clean", func=str.strip, input_key="raw", output_key="c")
        )


def test_run_without_an_input_names_the_key_and_its_readers() -> None:
    pipeline = Pipeline("p").add_task(Task(name="clean", func=str.strip, input_key="raw"))
    with pytest.raises(MissingInputError, match=r"'raw' \(read by clean\)"):
        pipeline.run()


def test_three_branches_run_concurrently() -> None:
    together = threading.Barrier(3, timeout=30)

    def branch(x: int) -> int:
        together.wait()  # returns only once all three branches run at the same time
        return x

    pipeline = Pipeline("fan-out").add_tasks(
        [Task(name=f"b{i}", func=branch, input_key="x", output_key=f"o{i}") for i in range(3)]
        + [
            Task(
                name="join", func=lambda *o: sum(o), input_key=["o0", "o1", "o2"], output_key="sum"
            )
        ]
    )
    result = pipeline.run(x=2)  # run one after another, the first branch would never pass
    assert result["sum"] == 6
    assert not together.broken


def test_a_raising_function_task_names_the_task_inputs_and_traceback_and_stops_the_run() -> None:
    def explode(text: str) -> str:
        raise ValueError(f"cannot clean {text!r}")

    never, slow_done = threading.Event(), threading.Event()

    def slow(raw: str) -> bool:
        never.wait(30)
        slow_done.set()
        return True

    pipeline = Pipeline("p").add_tasks(
        [
            Task(name="clean", func=explode, input_key="raw", output_key="c"),
            Task(name="slow", func=slow, input_key="raw", output_key="w"),
        ]
    )
    with pytest.raises(TaskFailedError) as info:
        pipeline.run(raw="x")
    assert not slow_done.is_set()  # the failure did not wait for the slow sibling
    never.set()
    message = str(info.value)
    assert "task 'clean' failed on inputs ['raw']" in message
    assert "ValueError: cannot clean 'x'" in message
    assert "in explode" in message  # the original traceback
    assert isinstance(info.value.cause, ValueError)


def test_retries_and_timeout_apply_per_attempt() -> None:
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return x

    pipeline = Pipeline("p").add_task(Task(name="f", func=flaky, input_key="x", retries=2))
    result = pipeline.run(x=1)
    assert result["f"] == 1 and result.task("f").attempts == 3
    slow = Pipeline("s").add_task(
        Task(name="s", func=lambda x: time.sleep(2), input_key="x", timeout_s=0.2)
    )
    with pytest.raises(TaskFailedError, match=r"timeout_s=0\.2"):
        slow.run(x=1)


def test_when_skips_a_task_and_its_output_is_none() -> None:
    pipeline = Pipeline("p", model_call=echo_agent).add_tasks(
        [
            Task(
                name="t", model="auto", input_key="q", output_key="a", when=lambda v: bool(v["q"])
            ),
        ]
    )
    assert pipeline.run(q="")["a"] is None
    assert pipeline.run(q="")["a"] is None and pipeline.run(q="hi")["a"] == "hi"


def test_run_many_with_a_thousand_inputs_is_bounded_and_loses_nothing() -> None:
    lock = threading.Lock()
    now = peak = 0

    def work(x: int) -> int:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.001)
        with lock:
            now -= 1
        return x * 2

    pipeline = Pipeline("many").add_task(Task(name="double", func=work, input_key="x"))
    results = pipeline.run_many([{"x": i} for i in range(1000)], concurrency=7, progress=False)
    assert [r["double"] for r in results] == [2 * i for i in range(1000)]  # type: ignore[index]
    assert 1 <= peak <= 7


def test_run_many_can_return_failures_in_place() -> None:
    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    pipeline = Pipeline("p").add_task(Task(name="f", func=odd_fails, input_key="x"))
    results = pipeline.run_many(
        [{"x": i} for i in range(6)], concurrency=3, progress=False, return_exceptions=True
    )
    assert [isinstance(r, TaskFailedError) for r in results] == [False, True] * 3


def test_the_last_model_task_streams_its_pieces() -> None:
    pipeline = Pipeline("s", model_call=echo_agent).add_tasks(
        [
            Task(name="clean", func=str.strip, input_key="raw", output_key="text"),
            Task(name="answer", model="auto", input_key="text", output_key="out", stream=True),
        ]
    )
    assert list(pipeline.stream(raw=" one two ")) == ["one ", "two "]
    assert pipeline.last_result["out"] == "one two"


def test_only_a_last_task_may_stream() -> None:
    with pytest.raises(PipelineBuildError, match="only a last task"):
        Pipeline("s").add_tasks(
            [
                Task(name="a", model="auto", input_key="q", output_key="x", stream=True),
                Task(name="b", func=str, input_key="x", output_key="y"),
            ]
        )


def test_no_agent_says_how_to_start_one() -> None:
    pipeline = Pipeline("p", base_url="http://127.0.0.1:9/v1").add_task(
        Task(name="m", model="glm-4-plus", input_key="q")
    )
    with pytest.raises(AgentUnreachableError, match=r"make run.*open-autoglm up"):
        pipeline.run(q="hi")
