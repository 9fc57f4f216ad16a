"""ONNX classifiers through onnxruntime; CUDA first, falling back to CPU when absent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from cloud_hub.backends.base import BackendEvent, RequestContext
from cloud_hub.errors import BackendError
from shared.protocol import InferRequest
from shared.runtimes.onnx import OnnxRuntime
from shared.runtimes.types import GenerationEnd


class OnnxBackend:
    """Serves ``kind="classify"`` requests; rows go in ``features``."""

    kinds = frozenset({"classify"})

    def __init__(
        self, name: str, *, path: Path, providers: Sequence[str], labels: Sequence[str] | None
    ) -> None:
        self.name = name
        self._path = path
        self._providers = tuple(providers)
        self._labels = list(labels) if labels else None
        self._runtime: OnnxRuntime | None = None

    @property
    def providers(self) -> list[str]:
        """The execution providers the loaded session really uses."""
        return self._runtime.providers if self._runtime else []

    async def start(self) -> None:
        """Open the ONNX session in a thread."""
        self._runtime = await asyncio.to_thread(
            OnnxRuntime.load,
            self._path,
            task="classify",
            labels=self._labels,
            providers=self._providers,
        )

    async def close(self) -> None:
        """Drop the session."""
        self._runtime = None

    async def run(
        self, req: InferRequest, ctx: RequestContext
    ) -> AsyncGenerator[BackendEvent, None]:
        """Classify every row; the results ride on the :class:`GenerationEnd`."""
        rt = self._runtime
        if rt is None:
            raise BackendError(f"model {self.name} is not loaded; start() the back-end first")
        rows = req.features or []
        found = await asyncio.to_thread(rt.classify, rows)
        yield GenerationEnd("stop", len(rows), 0, classifications=tuple(found))
