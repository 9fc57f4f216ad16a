"""The benchmarks' median of paired ratios and its bootstrap interval (``bench/paired_stats.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _paired_stats() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "paired_stats.py"
    spec = importlib.util.spec_from_file_location("paired_stats", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


median_with_interval = _paired_stats().median_with_interval


def test_the_median_is_the_plain_median_and_the_interval_brackets_it() -> None:
    ratios = [0.71, 0.93, 0.95, 0.96, 0.97, 0.99, 1.18]
    median, low, high = median_with_interval(ratios)
    assert median == 0.96
    assert 0.71 <= low <= median <= high <= 1.18
    assert low < high


def test_identical_runs_give_an_interval_of_zero_width() -> None:
    assert median_with_interval([0.95] * 9) == (0.95, 0.95, 0.95)


def test_more_runs_of_the_same_spread_narrow_the_interval() -> None:
    spread = [0.80, 0.90, 0.95, 1.00, 1.10]
    _, low5, high5 = median_with_interval(spread)
    median80, low80, high80 = median_with_interval(spread * 16)
    assert high80 - low80 < high5 - low5
    assert median80 == 0.95


def test_a_fixed_seed_reproduces_the_interval() -> None:
    ratios = [0.9, 0.97, 1.02, 0.88, 0.95, 1.1]
    assert median_with_interval(ratios, seed=3) == median_with_interval(ratios, seed=3)


def test_no_runs_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="--runs 1 or more"):
        median_with_interval([])
