"""``AutoTask``: one model request as a ready-made three-stage pipeline (the seed's chapter 3.3).

    task = AutoTask(task_type="text-generation", model="glm-small", prompt="…")
    result = task.run()
    result.output, result.tier, result.reason

The stages are preprocessing (trim the prompt), inference (the model task) and postprocessing
(trim the answer), run by a :class:`Pipeline`, so routing, tracing and errors are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openautoglm.pipeline import Mode, Pipeline
from shared.pipelines import PipelineBuildError, PipelineResult, Task, TaskTrace

__all__ = ["TASK_TYPES", "AutoTask", "AutoTaskResult"]

DEFAULT_MAX_TOKENS = 128
"""An answer's length unless ``max_tokens`` says otherwise (None: as long as the model's context allows)."""

#: task_type → the system message of its inference stage.
TASK_TYPES: dict[str, str | None] = {
    "text-generation": None,
    "summarization": "Summarise the user's text in a few sentences.",
    "translation": "Translate the user's text; answer with the translation only.",
    "question-answering": "Answer the user's question briefly and accurately.",
}


@dataclass(frozen=True)
class AutoTaskResult:
    """The answer (``output``), how it was served, and the whole run."""

    output: str
    tier: str | None
    reason: str | None
    run: PipelineResult

    @property
    def trace(self) -> list[TaskTrace]:
        """One entry per stage."""
        return self.run.trace


class AutoTask:
    """A model request with preprocessing and postprocessing; ``model="auto"`` lets the router choose."""

    def __init__(
        self,
        task_type: str = "text-generation",
        *,
        model: str = "auto",
        prompt: str,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        temperature: float | None = None,
        mode: Mode = "agent",
        base_url: str | None = None,
        **pipeline_options: Any,
    ) -> None:
        if task_type not in TASK_TYPES:
            raise PipelineBuildError(
                f"unknown task_type {task_type!r}; choose one of {sorted(TASK_TYPES)}"
            )
        self.task_type = task_type
        self.prompt = prompt
        self.pipeline = Pipeline(
            f"autotask-{task_type}", mode=mode, base_url=base_url, **pipeline_options
        ).add_tasks(
            [
                Task(name="preprocess", func=str.strip, input_key="prompt", output_key="text"),
                Task(
                    name="inference",
                    model=model,
                    system=TASK_TYPES[task_type],
                    input_key="text",
                    output_key="raw_output",
                    max_tokens=max_tokens,
                    temperature=temperature,
                ),
                Task(
                    name="postprocess", func=str.strip, input_key="raw_output", output_key="output"
                ),
            ]
        )

    def run(self) -> AutoTaskResult:
        """Run the three stages and return the answer."""
        return self._result(self.pipeline.run(prompt=self.prompt))

    async def arun(self) -> AutoTaskResult:
        """The async form of :meth:`run`."""
        return self._result(await self.pipeline.arun(prompt=self.prompt))

    @staticmethod
    def _result(run: PipelineResult) -> AutoTaskResult:
        inference = run.task("inference")
        return AutoTaskResult(
            output=run["output"], tier=inference.tier, reason=inference.reason, run=run
        )
