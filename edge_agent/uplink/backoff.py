"""Reconnect delays: exponential, capped and jittered; periods with jitter (pure; callers sleep them).

delays = reconnect_delays(1.0, 30.0)
next(delays)  # 0.5 … 1.5 s, then 1 … 3 s, 2 … 6 s, … up to 15 … 45 s
jittered(10.0)  # 9 … 11 s: a period that a fleet started together does not keep in step
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def reconnect_delays(
    first_s: float, cap_s: float, *, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Seconds to wait before each retry: the base doubles from ``first_s`` up to ``cap_s``,
    and each wait is the base times a random factor in [0.5, 1.5), so a fleet that lost its
    NATS server at the same moment does not come back in lockstep."""
    base = first_s
    while True:
        yield base * (0.5 + rand())
        base = min(base * 2, cap_s)


def jittered(
    period_s: float, *, spread: float = 0.1, rand: Callable[[], float] = random.random
) -> float:
    """``period_s`` ± ``spread`` (a fraction): devices started together (a site after a power
    cut) drift apart instead of beating or polling in step."""
    return period_s * (1 - spread + 2 * spread * rand())
