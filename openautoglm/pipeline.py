"""``Pipeline``: tasks wired by keys, run against an agent (the SDK's main class).

    pipeline = Pipeline(name="summarization_flow")
    pipeline.add_tasks([clean, summarise])          # validated here: keys, cycles, templates
    result = pipeline.run(raw_text="…")             # every key, plus result.trace
    results = pipeline.run_many([{...}, ...], concurrency=8)

Model tasks go to an agent's OpenAI API (``OPENAUTOGLM_BASE_URL``, default the all-in-one at
``http://127.0.0.1:8080/v1``); ``mode="embedded"`` starts one in this process instead.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from opentelemetry import trace
from tqdm import tqdm

from openautoglm.client import AgentClient
from shared.pipelines import (
    ModelCall,
    PipelineGraph,
    PipelineResult,
    Task,
    build_graph,
    run_graph,
    run_graph_many,
)
from shared.pipelines.declared import load_pipeline_file

__all__ = ["Mode", "Pipeline", "PipelineStream"]

Mode = Literal["agent", "embedded"]
T = TypeVar("T")
TRACER = "openautoglm"


class Pipeline:
    """A named DAG of :class:`Task` s; keyword arguments after ``name``."""

    def __init__(
        self,
        name: str,
        *,
        tasks: Iterable[Task] = (),
        inputs: Sequence[str] | None = None,
        mode: Mode = "agent",
        base_url: str | None = None,
        model_call: ModelCall | None = None,
    ) -> None:
        """``inputs`` declares the run's input keys (then a key nothing provides fails here);
        ``model_call`` replaces the agent (a seam for tests and for the agent's own runner)."""
        if mode not in ("agent", "embedded"):
            raise ValueError(f"mode must be 'agent' or 'embedded', not {mode!r}")
        self.name = name
        self.mode: Mode = mode
        self._declared = list(inputs) if inputs is not None else None
        self._base_url = base_url
        self._model_call = model_call
        self._tasks: list[Task] = []
        self._graph = build_graph(name, [], declared_inputs=self._declared)
        self.add_tasks(tasks)

    @classmethod
    def from_toml(cls, path: str | Path, **kwargs: Any) -> Pipeline:
        """A pipeline declared in a TOML file (function tasks by import path)."""
        declared = load_pipeline_file(Path(path))
        return cls(declared.name, tasks=declared.graph.tasks, inputs=declared.inputs, **kwargs)

    @property
    def graph(self) -> PipelineGraph:
        """The validated DAG (tasks in a topological order)."""
        return self._graph

    @property
    def tasks(self) -> list[Task]:
        """The tasks, in the order they were added."""
        return list(self._tasks)

    def add_task(self, task: Task) -> Pipeline:
        """Add one task; raises :class:`PipelineBuildError` (and adds nothing) if it breaks the DAG."""
        return self.add_tasks([task])

    def add_tasks(self, tasks: Iterable[Task]) -> Pipeline:
        """Add tasks together; the DAG is checked once they are all in."""
        tasks = list(tasks)
        self._graph = build_graph(self.name, [*self._tasks, *tasks], declared_inputs=self._declared)
        self._tasks.extend(tasks)
        return self

    # --- running -------------------------------------------------------------------------

    def run(self, **inputs: Any) -> PipelineResult:
        """Run once and return every key (``result["summary"]``) with ``result.trace``."""
        return _sync(self.arun(**inputs))

    async def arun(self, **inputs: Any) -> PipelineResult:
        """The async form of :meth:`run`."""
        async with self._client() as agent:
            return await run_graph(
                self._graph, inputs, model_call=self._model_call or agent.call, tracer=_tracer()
            )

    def run_many(
        self,
        inputs: Sequence[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: bool = True,
        return_exceptions: bool = False,
    ) -> list[PipelineResult | BaseException]:
        """Run on each input, at most ``concurrency`` at once; results in input order."""
        return _sync(
            self.arun_many(
                inputs,
                concurrency=concurrency,
                progress=progress,
                return_exceptions=return_exceptions,
            )
        )

    async def arun_many(
        self,
        inputs: Sequence[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: bool = True,
        return_exceptions: bool = False,
    ) -> list[PipelineResult | BaseException]:
        """The async form of :meth:`run_many` (a tqdm progress bar on stderr unless ``progress=False``)."""
        bar = tqdm(total=len(inputs), desc=self.name, unit="run", disable=not progress)
        try:
            async with self._client() as agent:
                return await run_graph_many(
                    self._graph,
                    inputs,
                    model_call=self._model_call or agent.call,
                    concurrency=concurrency,
                    on_done=lambda: bar.update(1),
                    return_exceptions=return_exceptions,
                    tracer=_tracer(),
                )
        finally:
            bar.close()

    def astream(self, **inputs: Any) -> PipelineStream:
        """Run once, yielding the streaming task's text pieces; ``.result`` is set at the end."""
        return PipelineStream(self, inputs)

    def stream(self, **inputs: Any) -> Iterator[str]:
        """Sync :meth:`astream`: text pieces as they arrive; returns when the run is done."""
        pieces: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def drive() -> None:
            try:
                result = await self._run_streaming(inputs, lambda p: pieces.put(("piece", p)))
                pieces.put(("done", result))
            except BaseException as exc:
                pieces.put(("error", exc))

        threading.Thread(target=asyncio.run, args=(drive(),), daemon=True).start()
        while True:
            kind, value = pieces.get()
            if kind == "piece":
                yield value
            elif kind == "error":
                raise value
            else:
                self.last_result: PipelineResult = value
                return

    async def _run_streaming(self, inputs: Mapping[str, Any], on_piece: Any) -> PipelineResult:
        async with self._client() as agent:
            return await run_graph(
                self._graph,
                inputs,
                model_call=self._model_call or agent.call,
                on_piece=on_piece,
                tracer=_tracer(),
            )

    def _client(self) -> AgentClient:
        base_url = self._base_url
        if self.mode == "embedded" and self._model_call is None:
            from openautoglm.embedded import embedded_agent  # loads llama.cpp only when asked

            base_url = embedded_agent().base_url
        return AgentClient(base_url)

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, tasks={[t.name for t in self._tasks]})"


class PipelineStream:
    """``async for piece in pipeline.astream(...)``; then ``stream.result``."""

    def __init__(self, pipeline: Pipeline, inputs: Mapping[str, Any]) -> None:
        self._pipeline = pipeline
        self._inputs = inputs
        self.result: PipelineResult | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        pieces: asyncio.Queue[str] = asyncio.Queue()
        run = asyncio.ensure_future(self._pipeline._run_streaming(self._inputs, pieces.put_nowait))
        try:
            while not run.done() or not pieces.empty():
                getter = asyncio.ensure_future(pieces.get())
                await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            self.result = run.result()
        finally:
            run.cancel()


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, on a helper thread when a loop already runs here (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(("ok", asyncio.run(coro)))
        except BaseException as exc:
            box.append(("error", exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    kind, value = box[0]
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]
