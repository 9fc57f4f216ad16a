"""Pure traffic generation and answer checking (no I/O): arrivals, request bodies, expected text.

times = arrival_times(rng, rate=1.0, amplitude=0.5, period_s=60, duration_s=30)
req = make_request(rng, scenario)          # body + what the ledger needs
ok = answer_text_ok(text, tier="cloud", words=req.words, max_tokens=16)
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any

from edge_agent.router.decide import RouteInput, decide
from edge_agent.router.policy import RouterConfig
from openautoglm.sim.runtime import LOCAL_WORD
from openautoglm.sim.scenario import Scenario

__all__ = [
    "SimRequest",
    "answer_text_ok",
    "arrival_times",
    "intended_tier",
    "make_request",
    "rate_at",
]

#: Tokens the simulated chat template adds to a one-message chat.
_TEMPLATE_TOKENS = 4


def rate_at(t: float, *, rate: float, amplitude: float, period_s: float) -> float:
    """The diurnal arrival rate at ``t`` s: a sine around ``rate``, starting at the mean."""
    return rate * (1.0 + amplitude * math.sin(2 * math.pi * t / period_s))


def arrival_times(
    rng: random.Random, *, rate: float, amplitude: float, period_s: float, duration_s: float
) -> list[float]:
    """Poisson arrival times in ``[0, duration_s)`` with the diurnal rate (by thinning)."""
    peak = rate * (1.0 + amplitude)
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration_s:
            return times
        if rng.random() * peak <= rate_at(t, rate=rate, amplitude=amplitude, period_s=period_s):
            times.append(t)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One request to send: its body and the facts the ledger and checks need."""

    body: dict[str, Any]
    prompt_class: str
    words: int
    prompt_tokens: int
    stream: bool


def make_request(rng: random.Random, scenario: Scenario) -> SimRequest:
    """A chat request drawn from the scenario's prompt mix and streaming share."""
    classes = scenario.prompts
    chosen = rng.choices(classes, weights=[c.weight for c in classes])[0]
    stream = rng.random() < scenario.traffic.streaming_share
    content = _prompt_text(chosen.words)
    body: dict[str, Any] = {
        "model": scenario.traffic.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": scenario.traffic.max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return SimRequest(
        body=body,
        prompt_class=chosen.name,
        words=chosen.words,
        prompt_tokens=chosen.words + _TEMPLATE_TOKENS,
        stream=stream,
    )


@functools.lru_cache(maxsize=64)
def _prompt_text(words: int) -> str:
    return " ".join(f"p{i}" for i in range(words))


def intended_tier(prompt_tokens: int, model: str, router: RouterConfig, n_ctx: int) -> str:
    """Where the real router sends this request with a healthy hub: edge, cloud or cascade."""
    decision = decide(
        RouteInput(prompt_tokens=prompt_tokens, model=model, fits_locally=prompt_tokens < n_ctx),
        router,
    )
    return "cascade" if decision.cascade else decision.tier.value


def answer_text_ok(text: str, *, tier: str, words: int, max_tokens: int) -> bool:
    """Whether ``text`` is exactly one answer of ``tier``: the echo of the prompt, or local words."""
    if tier == "cloud":
        return text == _prompt_text(min(words, max_tokens))
    return text == "".join(f"{LOCAL_WORD}{i} " for i in range(max_tokens))
