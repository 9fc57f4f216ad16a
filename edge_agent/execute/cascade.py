"""The cascade executor: answer locally, judge the first tokens, keep them or escalate.

    decision, events = await run_cascade(run, decision, cfg, stream=True, escalate=try_cloud)

Streamed, the first ``first_k`` token pieces are held back until they are judged, so nothing
reaches the client before the judgement; not streamed, the whole local answer is judged. The
judgement and the resulting decision are pure (``edge_agent.router.cascade``); this module only
reads events and carries the decision out. ``escalate`` asks the hub and returns its events, or
None when the hub could not answer, in which case the decision becomes ``fallback`` and the
local answer is served after all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from edge_agent.execute.events import Event, Failure, GenerationEnd, Pieces, replay
from edge_agent.execute.local import LocalRun
from edge_agent.router.cascade import Confidence, Judgement, judge, settle
from edge_agent.router.decide import RouteDecision, fallback
from edge_agent.router.policy import CascadeConfig
from shared.reasons import Tier

__all__ = ["Held", "hold_first", "run_cascade"]

Escalate = Callable[[RouteDecision], Awaitable["AsyncIterator[Event] | None"]]


@dataclass
class Held:
    """Events read ahead of the client, their token logprobs, and the unread rest (if any)."""

    events: list[Event]
    logprobs: list[float]
    rest: AsyncIterator[Event] | None


async def hold_first(events: AsyncIterator[Event], k: int | None) -> Held:
    """Read until ``k`` scored token pieces (None: all of them) or the end of ``events``."""
    held: list[Event] = []
    logprobs: list[float] = []
    scored = 0
    async for event in events:
        held.append(event)
        if isinstance(event, GenerationEnd | Failure):
            return Held(held, logprobs, None)
        if isinstance(event, Pieces):
            for piece in event.pieces:
                if piece.token_id >= 0:
                    scored += 1
                if piece.logprob is not None:
                    logprobs.append(piece.logprob)
            if k is not None and scored >= k:
                return Held(held, logprobs, events)
    return Held(held, logprobs, None)


async def run_cascade(
    run: LocalRun,
    decision: RouteDecision,
    cfg: CascadeConfig,
    *,
    stream: bool,
    escalate: Escalate,
) -> tuple[RouteDecision, AsyncIterator[Event], Judgement]:
    """Carry out a cascading ``decision``: the final decision, the answer's events, the judgement."""
    local = run.events()
    held = await hold_first(local, cfg.first_k if stream else None)
    judgement = judge(Confidence.from_logprobs(held.logprobs), cfg)
    failed = bool(held.events) and isinstance(held.events[-1], Failure)
    settled = settle(judgement, decision) if not failed else settle(_KEEP, decision)
    if settled.tier is Tier.CLOUD:
        cloud = await escalate(settled)
        if cloud is not None:
            run.abandon("escalated")
            await local.aclose()  # type: ignore[attr-defined]
            return settled, cloud, judgement
        settled = fallback(settled, "the cascade's escalation failed")
    return settled, replay(held.events, held.rest), judgement


_KEEP = Judgement(escalate=False, score=0.0, threshold=0.0, detail="the local run failed")
