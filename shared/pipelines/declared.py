"""Pipelines declared in TOML: function tasks by import path, model tasks inline.

    name = "summarize"
    description = "Clean a text, then summarise it in the cloud."
    inputs = ["raw_text"]                      # optional: declares the run's input keys

    [[tasks]]
    name = "clean_input"
    func = "examples.pipelines.text:clean"     # module:attribute (or module.attribute)
    input_key = "raw_text"
    output_key = "cleaned_text"

    [[tasks]]
    name = "generate_summary"
    model = "glm-4-plus"
    prompt_template = "Summarise: {cleaned_text}"
    output_key = "summary"
    stream = true

``func`` and ``when`` name callables (modules next to the file are importable); every other key is a :class:`Task` field. A file that
cannot be loaded raises :class:`PipelineLoadError` naming the file, the task and the fix.
"""

from __future__ import annotations

import importlib
import logging
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.pipelines.errors import PipelineError, PipelineLoadError
from shared.pipelines.graph import PipelineGraph, build_graph
from shared.pipelines.tasks import Task

__all__ = ["DeclaredPipeline", "PipelineCatalog", "import_callable", "load_pipeline_file"]

log = logging.getLogger("shared.pipelines")

_TASK_FIELDS = {
    "name", "func", "model", "prompt_template", "input_key", "output_key", "system", "max_tokens",
    "temperature", "top_p", "stop", "seed", "stream", "retries", "timeout_s", "when",
}  # fmt: skip
MAX_FILE_BYTES = 1 << 20
"""A declared pipeline is a small file; bigger ones are refused."""


@dataclass(frozen=True)
class DeclaredPipeline:
    """A pipeline loaded from a file."""

    name: str
    graph: PipelineGraph
    path: Path
    description: str = ""
    inputs: list[str] | None = None


def import_callable(spec: str) -> Callable[..., Any]:
    """``"pkg.mod:attr"`` (or ``"pkg.mod.attr"``) → the callable; ValueError saying why not."""
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{spec!r} is not an import path; write it as 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} ({exc}); install it or add its folder to PYTHONPATH"
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} is a {type(target).__name__}, not a callable")
    return target  # type: ignore[no-any-return]


def load_pipeline_file(path: Path) -> DeclaredPipeline:
    """Load and validate one TOML file; raises :class:`PipelineLoadError`."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PipelineLoadError(
                f"{path}: larger than {MAX_FILE_BYTES} bytes; is it a pipeline?"
            )
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PipelineLoadError(f"{path}: cannot read it as TOML: {exc}") from None
    # Like Airflow's dags folder: modules next to the file are importable by their names.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    name = doc.get("name") or path.stem
    raw_tasks = doc.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise PipelineLoadError(f"{path}: no [[tasks]] tables; declare at least one task")
    unknown_top = set(doc) - {"name", "description", "inputs", "tasks"}
    if unknown_top:
        raise PipelineLoadError(f"{path}: unknown top-level keys {sorted(unknown_top)}")
    tasks = [_task(path, i, raw) for i, raw in enumerate(raw_tasks)]
    inputs = doc.get("inputs")
    try:
        graph = build_graph(str(name), tasks, declared_inputs=inputs)
    except PipelineError as exc:
        raise PipelineLoadError(f"{path}: {exc}") from None
    return DeclaredPipeline(
        name=str(name),
        graph=graph,
        path=path,
        description=str(doc.get("description", "")),
        inputs=list(inputs) if inputs is not None else None,
    )


def _task(path: Path, index: int, raw: Any) -> Task:
    if not isinstance(raw, dict):
        raise PipelineLoadError(f"{path}: tasks[{index}] is not a table")
    label = f"{path}: task {raw.get('name', index)!r}"
    unknown = set(raw) - _TASK_FIELDS
    if unknown:
        raise PipelineLoadError(f"{label}: unknown keys {sorted(unknown)}")
    fields = dict(raw)
    for key in ("func", "when"):
        if key in fields:
            try:
                fields[key] = import_callable(str(fields[key]))
            except ValueError as exc:
                raise PipelineLoadError(f"{label}: {key} = {raw[key]!r}: {exc}") from None
    try:
        return Task(**fields)
    except PipelineError as exc:
        raise PipelineLoadError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise PipelineLoadError(f"{label}: {exc}") from None


@dataclass
class PipelineCatalog:
    """The pipelines of a folder of ``*.toml`` files, reloaded when a file changes.

    A file that fails to load is logged and listed in ``errors``; the others stay served.
    """

    folder: Path | None
    pipelines: dict[str, DeclaredPipeline] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _seen: tuple[tuple[str, float, int], ...] | None = None

    def refresh(self) -> None:
        """Reload if any file was added, removed or changed since the last look."""
        files = sorted(self.folder.glob("*.toml")) if self.folder and self.folder.is_dir() else []
        seen = tuple((str(p), p.stat().st_mtime, p.stat().st_size) for p in files)
        if seen == self._seen:
            return
        self._seen = seen
        self.pipelines, self.errors = {}, {}
        for path in files:
            try:
                declared = load_pipeline_file(path)
            except PipelineLoadError as exc:
                self.errors[path.name] = str(exc)
                log.error("pipeline not loaded: %s", exc)
                continue
            if declared.name in self.pipelines:
                other = self.pipelines[declared.name].path.name
                self.errors[path.name] = (
                    f"{path}: pipeline name {declared.name!r} is also used by {other}"
                )
                log.error("pipeline not loaded: %s", self.errors[path.name])
                continue
            self.pipelines[declared.name] = declared
