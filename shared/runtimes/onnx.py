"""ONNX models through onnxruntime: classifiers and embedders.

A classifier takes float feature vectors and returns, per row, the label, the class
probabilities and a confidence (the top probability). An embedder takes token ids
(``input_ids`` plus ``attention_mask`` if the graph wants one) and returns one vector per
row, mean-pooled over the sequence when the graph outputs per-token states.

Works with ``onnxruntime`` (edge) and ``onnxruntime-gpu`` (hub): pass the providers in
order of preference; the ones this build lacks are skipped, CPU is always last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.errors import InvalidInput, ModelLoadError, UnsupportedOperation
from shared.runtimes.types import Classification as Classification  # re-exported

OnnxTask = Literal["classify", "embed"]


class OnnxRuntime:
    """A loaded ONNX model.

    rt = OnnxRuntime.load(Path("digits.onnx"), task="classify")
    rt.classify([[0.0] * 64])[0].label
    """

    def __init__(
        self, session: Any, *, path: Path, task: OnnxTask, labels: Sequence[str] | None
    ) -> None:
        self._session = session
        self.path = path
        self.task = task
        self.providers: list[str] = list(session.get_providers())
        self._inputs = session.get_inputs()
        self._outputs = session.get_outputs()
        self._labels = list(labels) if labels else None
        self.n_features = self._feature_count()
        self.input_name: str = self._inputs[0].name
        """The graph's first input (the one ``classify``/``embed`` feed)."""

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        task: OnnxTask,
        labels: Sequence[str] | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> OnnxRuntime:
        """Open ``path`` with the first available providers; errors become :class:`ModelLoadError`."""
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelLoadError(
                "onnxruntime is not installed; install the edge extra: pip install 'open-autoglm[edge]'"
            ) from exc
        available = set(ort.get_available_providers())
        chosen = [p for p in providers if p in available]
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime could not load {path}: {exc}") from exc
        return cls(session, path=path, task=task, labels=labels)

    def _feature_count(self) -> int | None:
        shape = self._inputs[0].shape
        last = shape[-1] if shape else None
        return last if isinstance(last, int) else None

    def classify(self, rows: Sequence[Sequence[float]]) -> list[Classification]:
        """Classify a batch of feature vectors."""
        if self.task != "classify":
            raise UnsupportedOperation(f"{self.path.name} is an embedder; use /v1/embeddings")
        batch = np.asarray(rows, dtype=np.float32)
        if self.n_features is not None and batch.shape[-1] != self.n_features:
            raise InvalidInput(
                f"this classifier takes {self.n_features} features per row, got {batch.shape[-1]}"
            )
        outputs = self._session.run(None, {self._inputs[0].name: batch})
        probs = self._probabilities(outputs)
        labels = self._labels or [str(i) for i in range(probs.shape[1])]
        if len(labels) != probs.shape[1]:
            raise InvalidInput(
                f"the model has {probs.shape[1]} classes but {len(labels)} labels are configured"
            )
        result = []
        for row in probs:
            best = int(row.argmax())
            result.append(
                Classification(
                    label=labels[best],
                    probabilities={lab: float(p) for lab, p in zip(labels, row, strict=True)},
                    confidence=float(row[best]),
                )
            )
        return result

    def _probabilities(self, outputs: list[Any]) -> np.ndarray:
        # skl2onnx classifiers output [label, probabilities]; the latter is a 2-D tensor
        # (with zipmap disabled) or a list of dicts (zipmap on). Plain graphs output scores.
        for out in reversed(outputs):
            if isinstance(out, list) and out and isinstance(out[0], dict):
                keys = sorted(out[0])
                if self._labels is None:
                    self._labels = [str(k) for k in keys]
                return np.asarray([[d[k] for k in keys] for d in out], dtype=np.float64)
            arr = np.asarray(out)
            if arr.ndim == 2 and arr.dtype.kind == "f":
                sums = arr.sum(axis=1)
                if np.all(arr >= 0) and np.allclose(sums, 1.0, atol=1e-3):
                    return arr.astype(np.float64)
                shifted = np.exp(arr - arr.max(axis=1, keepdims=True))
                probs: np.ndarray = (shifted / shifted.sum(axis=1, keepdims=True)).astype(
                    np.float64
                )
                return probs
        raise UnsupportedOperation(f"{self.path.name} has no 2-D probability or score output")

    def embed(self, token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """Embed token id sequences (one vector per sequence, L2-normalised)."""
        if self.task != "embed":
            raise UnsupportedOperation(f"{self.path.name} is a classifier; use /v1/classify")
        vectors = []
        names = {i.name for i in self._inputs}
        for ids in token_ids:
            feed: dict[str, np.ndarray] = {self._inputs[0].name: np.asarray([ids], dtype=np.int64)}
            if "attention_mask" in names:
                feed["attention_mask"] = np.ones((1, len(ids)), dtype=np.int64)
            try:
                out = np.asarray(self._session.run(None, feed)[0], dtype=np.float32)
            except Exception as exc:  # out-of-range ids and the like
                raise InvalidInput(f"the embedder rejected these token ids: {exc}") from exc
            vec = (
                out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1)[0]
                if out.ndim == 3
                else out[0]
            )
            norm = float(np.linalg.norm(vec)) or 1.0
            vectors.append((vec / norm).tolist())
        return vectors
