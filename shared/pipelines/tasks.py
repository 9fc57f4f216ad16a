"""A task of a pipeline: a Python function or a model call, wired by keys (pure).

    Task(name="clean", func=str.strip, input_key="raw", output_key="text")
    Task(name="sum", model="glm-4-plus", prompt_template="Summarise: {text}", output_key="summary")

A task reads its ``input_key`` (one key or a list; a function gets the values positionally) and
writes its result under ``output_key``. A model task without ``input_key`` reads the fields of
its ``prompt_template``; with one, every template field must be one of its input keys.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.pipelines.errors import PipelineBuildError

__all__ = ["Task", "template_fields"]

Predicate = Callable[[Mapping[str, Any]], bool]


def template_fields(template: str) -> list[str]:
    """The names a ``str.format`` template reads, in order (``{a.b}`` reads ``a``)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PipelineBuildError(
            f"prompt_template {template!r} is not a valid format string: {exc}"
        ) from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = name.split(".", 1)[0].split("[", 1)[0]
        if not base or base.isdigit():
            raise PipelineBuildError(
                f"prompt_template {template!r} has a positional field {{{name}}}; name it after a key, e.g. {{text}}"
            )
        if base not in names:
            names.append(base)
    return names


@dataclass(kw_only=True, eq=False)
class Task:
    """One step of a :class:`Pipeline`: either ``func`` or ``model`` (with a prompt)."""

    name: str
    func: Callable[..., Any] | None = None
    """A function task's callable (sync functions run on worker threads; coroutines are awaited)."""
    model: str | None = None
    """A model task's model name: a local model, an alias (``glm-4-plus``, ``glm-small`` …) or ``auto``."""
    prompt_template: str | None = None
    """``str.format`` template of the user message; its fields are keys of the pipeline."""
    input_key: str | Sequence[str] | None = None
    output_key: str | None = None
    """Where the result goes; the task's name when empty."""
    system: str | None = None
    """A model task's system message."""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None
    seed: int | None = None
    stream: bool = False
    """Stream this model task's tokens (only the last task, whose output no task reads)."""
    retries: int = 0
    """Extra attempts after a failure (model calls the agent refused with 4xx are not retried)."""
    timeout_s: float | None = None
    """Deadline of one attempt."""
    when: Predicate | None = None
    """Run only if ``when(values)`` is true; a skipped task's output is None."""
    _reads: tuple[str, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not self.name:
            raise PipelineBuildError("a task needs a non-empty name")
        if (self.func is None) == (self.model is None):
            raise PipelineBuildError(
                f"{where}: give exactly one of func= (a function task) or model= (a model task)"
            )
        if self.func is not None and not callable(self.func):
            raise PipelineBuildError(
                f"{where}: func must be callable, not {type(self.func).__name__}"
            )
        if self.retries < 0 or (self.timeout_s is not None and self.timeout_s <= 0):
            raise PipelineBuildError(f"{where}: retries must be >= 0 and timeout_s > 0")
        if self.output_key is None:
            self.output_key = self.name
        keys = [self.input_key] if isinstance(self.input_key, str) else list(self.input_key or [])
        if len(set(keys)) != len(keys) or not all(isinstance(k, str) and k for k in keys):
            raise PipelineBuildError(
                f"{where}: input_key must be distinct non-empty strings, got {keys}"
            )
        if self.func is not None:
            for name in (
                "prompt_template",
                "system",
                "max_tokens",
                "temperature",
                "top_p",
                "stop",
                "seed",
            ):
                if getattr(self, name) is not None:
                    raise PipelineBuildError(
                        f"{where}: {name}= belongs to model tasks, not function tasks"
                    )
            if self.stream:
                raise PipelineBuildError(f"{where}: stream=True needs a model task")
            self._reads = tuple(keys)
            return
        if self.prompt_template is None:
            if len(keys) != 1:
                raise PipelineBuildError(
                    f"{where}: a model task without prompt_template sends its one input key as the prompt; "
                    f"it has {keys or 'none'}: add prompt_template='...{{key}}...'"
                )
            self._reads = tuple(keys)
            return
        fields = template_fields(self.prompt_template)
        if keys:
            unknown = [f for f in fields if f not in keys]
            if unknown:
                raise PipelineBuildError(
                    f"{where}: prompt_template field(s) {unknown} are not among its input keys {keys}; "
                    "add them to input_key or fix the template"
                )
            self._reads = tuple(keys)
        else:
            self._reads = tuple(fields)

    @property
    def kind(self) -> str:
        """``function`` or ``model``."""
        return "function" if self.func is not None else "model"

    @property
    def reads(self) -> tuple[str, ...]:
        """The keys this task reads, in the order a function receives them."""
        return self._reads

    @property
    def writes(self) -> str:
        """The key this task writes."""
        assert self.output_key is not None
        return self.output_key

    def prompt(self, values: Mapping[str, Any]) -> str:
        """The user message of a model task for ``values``."""
        if self.prompt_template is None:
            return str(values[self._reads[0]])
        return self.prompt_template.format(**{k: values[k] for k in self._reads})
