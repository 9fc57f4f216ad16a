"""Running a pipeline graph: independent tasks concurrently, one span and one trace entry per task.

    result = await run_graph(graph, {"raw_text": "…"}, model_call=call)
    result["summary"], result.trace[-1].tier

The model call is injected (``ModelCall``): the SDK sends it to an agent's OpenAI API over HTTP,
the agent runs it through its own request path in-process. Function tasks run on worker
threads (coroutine functions are awaited), so a slow function never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from opentelemetry import trace

from shared.pipelines.errors import (
    AgentUnreachableError,
    MissingInputError,
    ModelCallError,
    TaskFailedError,
)
from shared.pipelines.graph import PipelineGraph
from shared.pipelines.tasks import Task

__all__ = [
    "ModelCall",
    "ModelReply",
    "ModelRequest",
    "PipelineResult",
    "TaskTrace",
    "run_graph",
    "run_graph_many",
]

TRACER_NAME = "openautoglm.pipelines"
FUNCTION_THREADS = 32
"""Threads that run sync function tasks, shared by every run in the process."""
_pool: list[ThreadPoolExecutor] = []
_pool_lock = threading.Lock()


def _function_pool() -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(FUNCTION_THREADS, thread_name_prefix="pipeline-task"))
        return _pool[0]


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """One model call of a task: an OpenAI chat request in plain values."""

    task: str
    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    on_piece: Callable[[str], None] | None = None
    """Set for the streaming task: called with each text piece as it arrives."""


@dataclass(frozen=True, kw_only=True)
class ModelReply:
    """What a model call gave: the text and how it was served."""

    text: str
    tier: str | None = None
    """``edge`` or ``cloud`` (the agent's ``x-agl-tier``)."""
    reason: str | None = None
    """The router's reason (``x-agl-reason``)."""
    model: str | None = None
    """The model that answered (a hub model for cloud answers)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


ModelCall = Callable[[ModelRequest], Awaitable[ModelReply]]


@dataclass
class TaskTrace:
    """How one task went in one run."""

    task: str
    kind: str
    status: Literal["ok", "skipped", "failed", "cancelled", "pending"] = "pending"
    tier: str | None = None
    reason: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dict(self.__dict__)


class PipelineResult(dict[str, Any]):
    """Every key of a run (inputs and outputs), plus ``trace`` (one :class:`TaskTrace` per task)."""

    def __init__(
        self,
        values: Mapping[str, Any],
        *,
        pipeline: str,
        trace: list[TaskTrace],
        trace_id: str | None,
    ) -> None:
        super().__init__(values)
        self.pipeline = pipeline
        self.trace = trace
        self.trace_id = trace_id
        """The OTel trace id (hex) of the run, when tracing is on."""

    def task(self, name: str) -> TaskTrace:
        """The trace entry of task ``name``."""
        return next(t for t in self.trace if t.task == name)


async def run_graph(
    graph: PipelineGraph,
    inputs: Mapping[str, Any],
    *,
    model_call: ModelCall,
    on_piece: Callable[[str], None] | None = None,
    tracer: trace.Tracer | None = None,
) -> PipelineResult:
    """Run ``graph`` once; raises :class:`TaskFailedError` (others cancelled) on the first failure."""
    missing = sorted(graph.inputs - set(inputs))
    if missing:
        raise MissingInputError(graph.name, {k: graph.readers(k) for k in missing})
    tracer = tracer or trace.get_tracer(TRACER_NAME)
    values: dict[str, Any] = dict(inputs)
    traces = {t.name: TaskTrace(task=t.name, kind=t.kind) for t in graph.tasks}
    with tracer.start_as_current_span(f"pipeline {graph.name}") as span:
        span.set_attribute("agl.pipeline.name", graph.name)
        span.set_attribute("agl.pipeline.tasks", len(graph.tasks))
        ctx = span.get_span_context()
        trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else None
        pending = list(graph.tasks)
        running: dict[asyncio.Task[Any], Task] = {}
        done: set[str] = set()
        try:
            while pending or running:
                for task in [t for t in pending if graph.deps[t.name] <= done]:
                    pending.remove(task)
                    job = _run_task(
                        graph.name, task, values, traces[task.name], model_call, tracer, on_piece
                    )
                    running[asyncio.ensure_future(job)] = task
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for fut in finished:
                    task = running.pop(fut)
                    values[task.writes] = fut.result()  # raises the task's error
                    done.add(task.name)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc).split("\n", 1)[0]))
            for fut in running:
                fut.cancel()
                traces[running[fut].name].status = "cancelled"
            if running:
                await asyncio.wait(running)
            raise
    return PipelineResult(
        values, pipeline=graph.name, trace=[traces[t.name] for t in graph.tasks], trace_id=trace_id
    )


async def _run_task(
    pipeline: str,
    task: Task,
    values: Mapping[str, Any],
    record: TaskTrace,
    model_call: ModelCall,
    tracer: trace.Tracer,
    on_piece: Callable[[str], None] | None,
) -> Any:
    with tracer.start_as_current_span(f"pipeline.task {task.name}") as span:
        span.set_attribute("agl.pipeline.task", task.name)
        span.set_attribute("agl.pipeline.task.kind", task.kind)
        started = time.perf_counter()
        try:
            if task.when is not None and not task.when(dict(values)):
                record.status = "skipped"
                span.set_attribute("agl.pipeline.task.skipped", True)
                return None
            result = await _attempts(pipeline, task, values, record, model_call, on_piece)
            record.status = "ok"
            _annotate(span, record)
            return result
        except asyncio.CancelledError:
            record.status = "cancelled"
            raise
        except BaseException as exc:
            record.status = "failed"
            record.error = str(exc).split("\n", 1)[0]
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, record.error))
            raise
        finally:
            record.latency_s = time.perf_counter() - started


async def _attempts(
    pipeline: str,
    task: Task,
    values: Mapping[str, Any],
    record: TaskTrace,
    model_call: ModelCall,
    on_piece: Callable[[str], None] | None,
) -> Any:
    for attempt in range(task.retries + 1):
        record.attempts = attempt + 1
        try:
            if task.timeout_s is None:
                return await _once(task, values, record, model_call, on_piece)
            return await asyncio.wait_for(
                _once(task, values, record, model_call, on_piece), task.timeout_s
            )
        except (AgentUnreachableError, asyncio.CancelledError):
            raise
        except Exception as exc:
            final = attempt == task.retries or (
                isinstance(exc, ModelCallError) and 400 <= exc.status < 500 and exc.status != 429
            )
            if final:
                cause: BaseException = exc
                if isinstance(exc, TimeoutError):
                    cause = TimeoutError(f"the attempt ran past timeout_s={task.timeout_s}")
                raise TaskFailedError(
                    pipeline,
                    task.name,
                    input_keys=task.reads,
                    cause=cause,
                    traceback_text="".join(traceback.format_exception(exc)),
                    attempts=record.attempts,
                ) from exc
    raise AssertionError("unreachable")


async def _once(
    task: Task,
    values: Mapping[str, Any],
    record: TaskTrace,
    model_call: ModelCall,
    on_piece: Callable[[str], None] | None,
) -> Any:
    args = [values[k] for k in task.reads]
    if task.func is not None:
        if inspect.iscoroutinefunction(task.func):
            return await task.func(*args)
        # Our own pool, not the loop's default one: asyncio.run() waits for the default pool
        # at exit, so a failed run would wait for a sibling still running on a thread.
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            _function_pool(), partial(ctx.run, task.func, *args)
        )
    assert task.model is not None
    messages = [{"role": "system", "content": task.system}] if task.system else []
    messages.append({"role": "user", "content": task.prompt(values)})
    reply = await model_call(
        ModelRequest(
            task=task.name,
            model=task.model,
            messages=messages,
            max_tokens=task.max_tokens,
            temperature=task.temperature,
            top_p=task.top_p,
            stop=list(task.stop) if task.stop is not None else None,
            seed=task.seed,
            on_piece=on_piece if task.stream else None,
        )
    )
    record.tier, record.reason, record.model = reply.tier, reply.reason, reply.model or task.model
    record.prompt_tokens, record.completion_tokens = reply.prompt_tokens, reply.completion_tokens
    return reply.text


def _annotate(span: trace.Span, record: TaskTrace) -> None:
    facts = {
        "agl.route.tier": record.tier,
        "agl.route.reason": record.reason,
        "gen_ai.response.model": record.model,
        "gen_ai.usage.input_tokens": record.prompt_tokens,
        "gen_ai.usage.output_tokens": record.completion_tokens,
    }
    for key, value in facts.items():
        if value is not None:
            span.set_attribute(key, value)
    span.set_attribute("agl.pipeline.task.attempts", record.attempts)


@dataclass
class _Outcome:
    results: list[PipelineResult | BaseException | None] = field(default_factory=list)


async def run_graph_many(
    graph: PipelineGraph,
    inputs: Sequence[Mapping[str, Any]],
    *,
    model_call: ModelCall,
    concurrency: int,
    on_done: Callable[[], None] | None = None,
    return_exceptions: bool = False,
    tracer: trace.Tracer | None = None,
) -> list[PipelineResult | BaseException]:
    """Run ``graph`` on every input with at most ``concurrency`` runs at once; results in order.

    ``concurrency`` workers pull the next index, so at most that many runs (and coroutines)
    exist at any moment, however long ``inputs`` is.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    out = _Outcome([None] * len(inputs))
    indices: Iterator[int] = iter(range(len(inputs)))

    async def worker() -> None:
        for i in indices:
            try:
                out.results[i] = await run_graph(
                    graph, inputs[i], model_call=model_call, tracer=tracer
                )
            except Exception as exc:
                if not return_exceptions:
                    raise
                out.results[i] = exc
            if on_done is not None:
                on_done()

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(inputs)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        if workers:
            await asyncio.wait(workers)
    assert all(r is not None for r in out.results)
    return [r for r in out.results if r is not None]
