"""The models one agent serves, and their loading state."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from edge_agent.errors import ApiError, NotReadyError
from edge_agent.settings import EdgeSettings, ModelSpec
from shared.errors import AglError, ConfigError
from shared.model_files import (
    BUNDLED_SHA256,
    bundled_model_path,
    resolve_model_file,
    verify_sha256,
)
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.onnx import OnnxRuntime, OnnxTask

log = logging.getLogger("edge_agent.models")

Runtime = GgufRuntime | OnnxRuntime
State = Literal["loading", "ready", "failed"]


@dataclass
class ServedModel:
    """A model as ``/v1/models`` lists it, with its runtime once loaded."""

    id: str
    spec: ModelSpec
    runtime: Runtime | None = None
    created: int = field(default_factory=lambda: int(time.time()))


def plan_models(settings: EdgeSettings) -> list[ModelSpec]:
    """Resolve every configured model file up front, so a bad path fails before serving."""
    if settings.model_path is None:
        main = ModelSpec(
            id=settings.model_id,
            path=bundled_model_path(),
            task="chat",
            sha256=BUNDLED_SHA256,
            n_ctx=settings.n_ctx,
        )
    else:
        main = ModelSpec(
            id=settings.model_id,
            path=resolve_model_file(settings.model_path),
            task="chat",
            sha256=settings.model_sha256,
            n_ctx=settings.n_ctx,
        )
    specs = [main]
    for extra in settings.extra_models:
        specs.append(extra.model_copy(update={"path": resolve_model_file(extra.path)}))
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ConfigError(f"model id {spec.id!r} is used twice; give every model a distinct id")
        seen.add(spec.id)
        suffix = spec.path.suffix.lower()
        if suffix == ".onnx" and spec.task not in ("classify", "embed"):
            raise ConfigError(
                f"model {spec.id!r}: an ONNX model's task must be classify or embed, not {spec.task}"
            )
    return specs


def load_runtime(spec: ModelSpec, settings: EdgeSettings) -> Runtime:
    """Verify the digest (when pinned) and load one model."""
    if spec.sha256:
        verify_sha256(spec.path, spec.sha256)
    if spec.path.suffix.lower() == ".onnx":
        task: OnnxTask = "classify" if spec.task == "classify" else "embed"
        return OnnxRuntime.load(spec.path, task=task, labels=spec.labels, providers=spec.providers)
    return GgufRuntime.load(
        spec.path,
        n_ctx=spec.n_ctx,
        n_threads=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
    )


Loader = Callable[[ModelSpec, EdgeSettings], Runtime]


def model_facts(model: ServedModel) -> dict[str, str | int]:
    """What the start-up log and ``/status`` say about a model: task, format, digest, size.

    The digest is the pinned one (checked at load); an unpinned file is not hashed here, as
    hashing gigabytes would delay the start.
    """
    facts: dict[str, str | int] = {"task": model.spec.task, "format": model.spec.path.suffix[1:]}
    facts["sha256"] = model.spec.sha256 or "unpinned"
    runtime = model.runtime
    if isinstance(runtime, GgufRuntime):
        facts["n_ctx"] = runtime.n_ctx
    with contextlib.suppress(OSError):
        facts["file_bytes"] = model.spec.path.stat().st_size
    return facts


class ModelRegistry:
    """Loads models on a background thread and answers lookups by model id.

    ``loader`` is the seam tests use to slow loading down (to observe ``/readyz``).
    """

    def __init__(
        self, specs: list[ModelSpec], settings: EdgeSettings, *, loader: Loader = load_runtime
    ) -> None:
        self._settings = settings
        self._loader = loader
        self.models = {s.id: ServedModel(id=s.id, spec=s) for s in specs}
        self.main_id = specs[0].id
        self.state: State = "loading"
        self.error: str | None = None
        #: The id of the model that failed to load (``state == "failed"``).
        self.failed_id: str | None = None
        self._ready = threading.Event()

    def load_all(self) -> None:
        """Load every model; blocking, so run it off the event loop."""
        model: ServedModel | None = None
        try:
            for model in self.models.values():
                log.info("loading model %s from %s", model.id, model.spec.path)
                model.runtime = self._loader(model.spec, self._settings)
                log.info(
                    "loaded model %s",
                    model.id,
                    extra={"model": model.id, "path": str(model.spec.path), **model_facts(model)},
                )
            self.state = "ready"
            log.info("all models loaded")
        except AglError as exc:
            self.state, self.error = "failed", str(exc)
            self.failed_id = model.id if model is not None else None
            log.error("model loading failed: %s", exc)
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading finished (either way)."""
        return self._ready.wait(timeout)

    def get(self, model_id: str) -> ServedModel:
        """The ready model called ``model_id``, or an API error saying what to do."""
        model = self.models.get(model_id)
        if model is None:
            aliases = [f"{a} (cloud)" for a in self._settings.router.cloud_aliases]
            known = ", ".join([*sorted(self.models), *sorted(aliases)])
            raise ApiError(
                404,
                f"the model {model_id!r} does not exist on this agent; available: {known}",
                code="model_not_found",
                param="model",
            )
        if self.state == "failed":
            raise NotReadyError(f"models failed to load: {self.error}")
        if model.runtime is None:
            raise NotReadyError(f"model {model_id!r} is still loading; retry shortly")
        return model

    def main(self) -> ServedModel:
        """The main chat model (the one with the scheduler)."""
        return self.models[self.main_id]

    def close(self) -> None:
        """Free every runtime."""
        for model in self.models.values():
            if isinstance(model.runtime, GgufRuntime):
                model.runtime.close()
            model.runtime = None
