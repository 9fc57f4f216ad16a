"""Errors of pipelines: building one, loading a declared one, and running it.

PipelineError (AglError)
├── PipelineBuildError     the tasks do not form a valid DAG (missing key, two producers,
│                          a cycle, a template field no input provides …)
├── PipelineLoadError      a declared pipeline (TOML) cannot be loaded (bad import path …)
├── MissingInputError      ``run()`` was not given a key that a task needs
├── TaskFailedError        a task raised, timed out or its model call failed
├── ModelCallError         the agent answered a model call with an error (404, 400, 503 …)
└── AgentUnreachableError  no agent answers at the configured URL
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import AglError

__all__ = [
    "AgentUnreachableError",
    "MissingInputError",
    "ModelCallError",
    "PipelineBuildError",
    "PipelineError",
    "PipelineLoadError",
    "TaskFailedError",
]


class PipelineError(AglError):
    """Base class of every pipeline error."""


class PipelineBuildError(PipelineError):
    """The tasks do not form a valid pipeline; raised by ``add_task``/``add_tasks``."""


class PipelineLoadError(PipelineError):
    """A declared pipeline file cannot be loaded."""


class MissingInputError(PipelineError):
    """``run()`` lacks keys that tasks read."""

    def __init__(self, pipeline: str, missing: dict[str, list[str]]) -> None:
        needs = "; ".join(f"{key!r} (read by {', '.join(tasks)})" for key, tasks in missing.items())
        super().__init__(
            f"pipeline {pipeline!r} is missing input {needs}; pass it to run(), e.g. "
            f"run({next(iter(missing))}=...)"
        )
        self.pipeline = pipeline
        self.missing = missing


class ModelCallError(PipelineError):
    """The agent refused or failed a model call; ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: int, model: str) -> None:
        super().__init__(f"model {model!r}: the agent answered {status}: {message}")
        self.status = status
        self.model = model
        self.agent_message = message


class AgentUnreachableError(PipelineError):
    """No agent answers at ``base_url``; the message says how to start one."""

    def __init__(self, base_url: str, cause: str) -> None:
        super().__init__(
            f"no Open-AutoGLM agent answers at {base_url} ({cause}); start one with "
            "`make run` or `open-autoglm up`, point OPENAUTOGLM_BASE_URL at a running agent, "
            'or use Pipeline(..., mode="embedded") to start one in this process'
        )
        self.base_url = base_url


class TaskFailedError(PipelineError):
    """A task failed; the message names the task, its input keys and the original traceback."""

    def __init__(
        self,
        pipeline: str,
        task: str,
        *,
        input_keys: Sequence[str],
        cause: BaseException,
        traceback_text: str,
        attempts: int,
    ) -> None:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(
            f"pipeline {pipeline!r}: task {task!r} failed{tries} on inputs "
            f"{list(input_keys)}: {type(cause).__name__}: {cause}\n"
            f"original traceback:\n{traceback_text}"
        )
        self.pipeline = pipeline
        self.task = task
        self.input_keys = list(input_keys)
        self.cause = cause
        self.traceback_text = traceback_text
