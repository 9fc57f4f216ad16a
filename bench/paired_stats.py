"""The median of paired ratios, with a bootstrap 95 % interval, for the side-by-side benchmarks.

    ratio, low, high = median_with_interval([agent / raw for agent, raw in pairs])

On a shared 2-core machine one pair can land anywhere in 0.7-1.2 while the median moves far
less; the interval says how far: resample the pairs with replacement, take each sample's median,
and keep the middle 95 % of those medians. A fixed seed makes a run's interval reproducible from
its printed pairs.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

__all__ = ["median_with_interval"]


def median_with_interval(
    ratios: Sequence[float], *, resamples: int = 5000, seed: int = 0
) -> tuple[float, float, float]:
    """``(median, low, high)``: the median and its bootstrap 95 % interval."""
    if not ratios:
        raise ValueError("no runs to summarise; pass --runs 1 or more")
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    cut = int(resamples * 0.025)
    return statistics.median(ratios), medians[cut], medians[-cut - 1]
