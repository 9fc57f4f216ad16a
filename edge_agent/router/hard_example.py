"""Hard-example judges for classifier probabilities, after KubeEdge Sedna's joint inference.

An ONNX classifier at the edge answers unless its output looks hard; hard examples go to the hub.
Both judges give a confidence in [0, 1]; an example is hard when its confidence is below the
threshold.

- ``max_prob``: the largest class probability (Sedna's ``ThresholdFilter``).
- ``cross_entropy``: ``1 + Σ p·log p / log n`` with ``0·log 0 = 0`` and ``n`` classes, i.e. one minus
  the normalised entropy (Sedna's ``CrossEntropyFilter``): 1 for one-hot, 0 for uniform.

    is_hard(np.array([0.4, 0.35, 0.25]), "cross_entropy", 0.5)  # True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shared.reasons import RouteReason, Tier

__all__ = [
    "HardExampleMethod",
    "batch_confidence",
    "cross_entropy_confidence",
    "is_hard",
    "joint_route",
    "max_prob_confidence",
]

HardExampleMethod = Literal["max_prob", "cross_entropy"]

# Classifier outputs are float32 softmaxes; allow their rounding, refuse anything that is not one.
_SUM_TOLERANCE = 1e-3


def _as_probs(p: ArrayLike) -> NDArray[np.float64]:
    """Check that ``p`` is one probability vector or a batch of them (one row each)."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0 or arr.size == 0:
        raise ValueError(
            f"expected class probabilities of shape (n_classes,) or (batch, n_classes), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("class probabilities must be finite and non-negative")
    sums = arr.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > _SUM_TOLERANCE):
        raise ValueError(
            "class probabilities must sum to 1 (within 1e-3); apply softmax to logits first"
        )
    return arr


def _max_prob(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(arr.max(axis=-1), dtype=np.float64)


def _cross_entropy(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    n = arr.shape[-1]
    if n == 1:
        return np.ones(arr.shape[:-1], dtype=np.float64)
    # 0·log 0 = 0: take the log only where p > 0.
    plogp = np.where(arr > 0, arr * np.log(np.where(arr > 0, arr, 1.0)), 0.0)
    conf = 1.0 + plogp.sum(axis=-1) / np.log(n)
    return np.asarray(np.clip(conf, 0.0, 1.0), dtype=np.float64)


def max_prob_confidence(p: ArrayLike) -> float:
    """The largest class probability of one probability vector."""
    arr = _as_probs(p)
    if arr.ndim != 1:
        raise ValueError(f"expected one probability vector, got shape {arr.shape}")
    return float(_max_prob(arr))


def cross_entropy_confidence(p: ArrayLike) -> float:
    """``1 + Σ p·log p / log n`` of one probability vector: 1 for one-hot, 0 for uniform."""
    arr = _as_probs(p)
    if arr.ndim != 1:
        raise ValueError(f"expected one probability vector, got shape {arr.shape}")
    return float(_cross_entropy(arr))


def batch_confidence(probs: ArrayLike, method: HardExampleMethod) -> NDArray[np.float64]:
    """Confidence of every row of a ``(batch, n_classes)`` probability matrix."""
    arr = _as_probs(probs)
    if arr.ndim != 2:
        raise ValueError(f"expected a (batch, n_classes) matrix, got shape {arr.shape}")
    return _judge(method)(arr)


def is_hard(p: ArrayLike, method: HardExampleMethod, threshold: float) -> bool:
    """Whether one example is hard: its confidence by ``method`` is below ``threshold``."""
    if method == "max_prob":
        return max_prob_confidence(p) < threshold
    if method == "cross_entropy":
        return cross_entropy_confidence(p) < threshold
    raise ValueError(f"unknown hard-example method {method!r}; use 'max_prob' or 'cross_entropy'")


def _judge(method: str) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    if method == "max_prob":
        return _max_prob
    if method == "cross_entropy":
        return _cross_entropy
    raise ValueError(f"unknown hard-example method {method!r}; use 'max_prob' or 'cross_entropy'")


def joint_route(*, rows: int, hard: int, escalated: bool) -> tuple[Tier, RouteReason]:
    """Tier and reason of a classify answer with ``hard`` of ``rows`` rows judged hard.

    No hard rows → edge, ``default``; hard rows the hub answered → ``confidence`` (cloud when
    every row went there, else edge since the edge answered the rest); hard rows the hub could
    not answer → edge, ``fallback``.

        joint_route(rows=4, hard=4, escalated=True)  # (Tier.CLOUD, RouteReason.CONFIDENCE)
    """
    if hard == 0:
        return Tier.EDGE, RouteReason.DEFAULT
    if not escalated:
        return Tier.EDGE, RouteReason.FALLBACK
    return (Tier.CLOUD if hard == rows else Tier.EDGE), RouteReason.CONFIDENCE
