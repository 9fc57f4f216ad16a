"""Sedna-style hard-example judges on known probability vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_agent.router import (
    batch_confidence,
    cross_entropy_confidence,
    is_hard,
    max_prob_confidence,
)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_uniform_has_zero_cross_entropy_confidence(n: int) -> None:
    assert cross_entropy_confidence(np.full(n, 1.0 / n)) == pytest.approx(0.0, abs=1e-12)
    assert max_prob_confidence(np.full(n, 1.0 / n)) == pytest.approx(1.0 / n)


def test_one_hot_is_fully_confident_with_zero_log_zero_as_zero() -> None:
    p = np.array([0.0, 1.0, 0.0, 0.0])
    assert cross_entropy_confidence(p) == 1.0
    assert max_prob_confidence(p) == 1.0


def test_cross_entropy_matches_the_formula_on_a_known_vector() -> None:
    p = [0.5, 0.25, 0.25]
    expected = 1 + (0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(3)
    assert cross_entropy_confidence(p) == pytest.approx(expected)
    assert isinstance(cross_entropy_confidence(p), float)


def test_float32_softmax_output_is_accepted() -> None:
    p = np.array([0.7, 0.2, 0.1], dtype=np.float32)
    assert max_prob_confidence(p) == pytest.approx(0.7)


def test_is_hard_compares_confidence_with_the_threshold() -> None:
    p = np.array([0.6, 0.3, 0.1])
    assert is_hard(p, "max_prob", 0.7)
    assert not is_hard(p, "max_prob", 0.6)  # equal is not below
    ce = cross_entropy_confidence(p)
    assert is_hard(p, "cross_entropy", ce + 1e-9)
    assert not is_hard(p, "cross_entropy", ce)
    with pytest.raises(ValueError, match="unknown hard-example method"):
        is_hard(p, "entropy", 0.5)  # type: ignore[arg-type]


def test_batch_confidence_matches_the_single_vector_judges() -> None:
    probs = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(batch_confidence(probs, "max_prob"), [0.9, 0.5, 1.0])
    np.testing.assert_allclose(
        batch_confidence(probs, "cross_entropy"),
        [cross_entropy_confidence(row) for row in probs],
    )
    with pytest.raises(ValueError, match="batch, n_classes"):
        batch_confidence(np.array([0.5, 0.5]), "max_prob")
    with pytest.raises(ValueError, match="unknown"):
        batch_confidence(probs, "nope")  # type: ignore[arg-type]


def test_single_class_is_certain() -> None:
    assert cross_entropy_confidence([1.0]) == 1.0


@pytest.mark.parametrize(
    "p, match",
    [
        ([], "shape"),
        ([[[0.5, 0.5]]], "shape"),
        ([0.5, math.nan], "finite"),
        ([1.5, -0.5], "non-negative"),
        ([0.2, 0.2], "sum to 1"),
    ],
)
def test_bad_probability_vectors_are_refused(p: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cross_entropy_confidence(p)  # type: ignore[arg-type]


def test_single_vector_judges_refuse_a_batch() -> None:
    with pytest.raises(ValueError, match="one probability vector"):
        max_prob_confidence([[0.5, 0.5]])
    with pytest.raises(ValueError, match="one probability vector"):
        cross_entropy_confidence([[0.5, 0.5]])
