"""The slots of the batched decoder: one KV-cache sequence each, and the request using it.

A slot remembers which tokens its KV sequence holds (``cached``), even after its request ended,
so the next request whose prompt starts the same way (the same system prompt, a repeated
question) decodes only the rest. Pure bookkeeping apart from ``Running``'s text handling; the
decoder does the llama.cpp calls.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from shared.runtimes.stops import StopStringFilter
from shared.runtimes.types import FinishReason, PreparedPrompt, SamplingParams

__all__ = ["DecodeJob", "Running", "Slot", "common_prefix"]

#: A copy from another sequence must save at least this many tokens to be worth it.
MIN_COPY_TOKENS = 16


@dataclass(eq=False)
class DecodeJob:
    """One generation handed to the decoder.

    ``post`` receives :class:`TokenPiece` s, then one :class:`GenerationEnd` or an exception;
    ``done`` is called once after the last ``post``. Both run on the decode thread: keep them
    short (append to a buffer, wake a reader).
    """

    prompt: PreparedPrompt
    params: SamplingParams
    post: Callable[[object], None]
    done: Callable[[], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Running:
    """The state of a job while it holds a slot."""

    job: DecodeJob
    sampler: Any
    pending: list[int]
    """Prompt tokens still to prefill."""
    budget: int
    stops: StopStringFilter
    last: int = -1
    """The last sampled token, decoded at the next step."""
    n_out: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


@dataclass(eq=False)
class Slot:
    """One KV-cache sequence of the decoder's context."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    """Tokens whose keys and values the sequence holds, at positions 0…len-1."""
    run: Running | None = None

    @property
    def busy(self) -> bool:
        return self.run is not None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def plan_reuse(
    prompt: Sequence[int],
    free: Sequence[Slot],
    every: Sequence[Slot],
    *,
    min_copy: int = MIN_COPY_TOKENS,
    not_from: AbstractSet[int] = frozenset(),
) -> tuple[Slot, Slot | None, int]:
    """Which free slot a prompt takes, which slot to copy cells from (or None) and how many.

    The free slot keeps its own cached prefix; another slot's longer prefix is copied when it
    saves at least ``min_copy`` tokens (a copy moves the whole sequence's cells). Slots in
    ``not_from`` (copies not yet carried out) are no source. At least one prompt token is always
    left to decode (its logits give the first sampled token).
    """
    limit = len(prompt) - 1
    shared = {s.seq_id: min(common_prefix(prompt, s.cached), limit) for s in every}
    dst = max(free, key=lambda s: shared[s.seq_id])
    n_own = shared[dst.seq_id]
    best_src, n_src = None, n_own
    for slot in every:
        if slot is dst or slot.seq_id in not_from:
            continue
        n = shared[slot.seq_id]
        if n >= n_src + min_copy and n > n_src:
            best_src, n_src = slot, n
    return dst, best_src, n_src if best_src is not None else n_own


def finish_reason_of(run: Running) -> FinishReason | None:
    """Why a sequence ends after its latest (not end-of-generation) token, or None to go on."""
    if run.stops.stopped:
        return "stop"
    if run.n_out >= run.budget:
        return "length"
    return None
