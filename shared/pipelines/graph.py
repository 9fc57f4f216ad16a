"""Tasks → a validated DAG (pure): who produces each key, who waits for whom, in what order.

    graph = build_graph("flow", [clean, summarise])
    graph.inputs            # frozenset({'raw_text'}): keys run() must be given

Every problem is found here, before anything runs: two tasks with one name, two producers of
one key, a cycle, a declared input list that lacks a key a task reads, more than one streaming
task or a streaming task whose output another task reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.pipelines.errors import PipelineBuildError
from shared.pipelines.tasks import Task

__all__ = ["PipelineGraph", "build_graph"]


@dataclass(frozen=True)
class PipelineGraph:
    """A valid pipeline: tasks in a topological order and their dependencies."""

    name: str
    tasks: tuple[Task, ...]
    producers: dict[str, str]
    """Key → the task that writes it."""
    deps: dict[str, frozenset[str]]
    """Task name → the tasks whose outputs it reads."""
    inputs: frozenset[str]
    """Keys no task writes: ``run()`` must pass them."""

    @property
    def streaming_task(self) -> Task | None:
        """The task whose tokens stream, if any."""
        return next((t for t in self.tasks if t.stream), None)

    def readers(self, key: str) -> list[str]:
        """Names of the tasks that read ``key``."""
        return [t.name for t in self.tasks if key in t.reads]


def build_graph(
    name: str, tasks: Sequence[Task], *, declared_inputs: Iterable[str] | None = None
) -> PipelineGraph:
    """Validate ``tasks`` as one pipeline; raises :class:`PipelineBuildError` naming tasks and keys."""
    where = f"pipeline {name!r}"
    names: set[str] = set()
    producers: dict[str, str] = {}
    for task in tasks:
        if task.name in names:
            raise PipelineBuildError(
                f"{where}: two tasks are named {task.name!r}; give each its own name"
            )
        names.add(task.name)
        other = producers.get(task.writes)
        if other is not None:
            raise PipelineBuildError(
                f"{where}: tasks {other!r} and {task.name!r} both write key {task.writes!r}; "
                "each key has one producer"
            )
        producers[task.writes] = task.name
    inputs = frozenset(k for t in tasks for k in t.reads if k not in producers)
    if declared_inputs is not None:
        declared = set(declared_inputs)
        missing = sorted(inputs - declared)
        if missing:
            by = {k: [t.name for t in tasks if k in t.reads] for k in missing}
            detail = "; ".join(f"{k!r} read by {', '.join(v)}" for k, v in by.items())
            raise PipelineBuildError(
                f"{where}: no task writes and no declared input provides {detail}; "
                "add a task that writes it or list it in inputs"
            )
        inputs = frozenset(inputs | declared)
    deps = {t.name: frozenset(producers[k] for k in t.reads if k in producers) for t in tasks}
    order = _topological(where, tasks, deps)
    streaming = [t for t in tasks if t.stream]
    if len(streaming) > 1:
        raise PipelineBuildError(
            f"{where}: tasks {[t.name for t in streaming]} all stream; only the last model task can"
        )
    for task in streaming:
        readers = [t.name for t in tasks if task.writes in t.reads]
        if readers:
            raise PipelineBuildError(
                f"{where}: task {task.name!r} streams, but {readers} read its key {task.writes!r}; "
                "only a last task (whose output nothing reads) can stream"
            )
    return PipelineGraph(name=name, tasks=order, producers=producers, deps=deps, inputs=inputs)


def _topological(
    where: str, tasks: Sequence[Task], deps: dict[str, frozenset[str]]
) -> tuple[Task, ...]:
    by_name = {t.name: t for t in tasks}
    placed: list[Task] = []
    done: set[str] = set()
    left = [t.name for t in tasks]
    while left:
        ready = [n for n in left if deps[n] <= done]
        if not ready:
            raise PipelineBuildError(
                f"{where}: the tasks form a cycle: {_cycle(left, deps, by_name)}"
            )
        for n in ready:
            placed.append(by_name[n])
            done.add(n)
        left = [n for n in left if n not in done]
    return tuple(placed)


def _cycle(left: list[str], deps: dict[str, frozenset[str]], by_name: dict[str, Task]) -> str:
    """One cycle among ``left``, written task -(key)-> task."""
    start = left[0]
    trail = [start]
    while True:
        nxt = sorted(d for d in deps[trail[-1]] if d in left)[0]
        if nxt in trail:
            loop = [*trail[trail.index(nxt) :], nxt]
            break
        trail.append(nxt)
    # ``loop`` follows "reads from": reverse it so arrows point along the data flow.
    loop.reverse()
    parts = [repr(loop[0])]
    for a, b in itertools.pairwise(loop):
        parts.append(f"-({by_name[a].writes!r})-> {b!r}")
    return " ".join(parts)
