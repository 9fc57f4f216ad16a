"""ECHO back-end — a BENCHMARK AND TEST STAND-IN, not a model.

It streams the last user message (or the prompt) back word by word so the transport can be
measured and tested without a model's cost. Never the default: a config must name it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from cloud_hub.backends.base import BackendEvent, RequestContext
from shared.protocol import InferRequest
from shared.runtimes.types import GenerationEnd


class EchoBackend:
    """Repeats the input back; ``delay_s`` pauses between words to imitate a slow model."""

    is_stand_in = True
    kinds = frozenset({"chat", "completion"})

    def __init__(self, name: str, *, delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to free."""

    @staticmethod
    def _source(req: InferRequest) -> str:
        if req.messages:
            for turn in reversed(req.messages):
                if turn.role == "user":
                    return turn.content
            return req.messages[-1].content
        return req.prompt or ""

    async def run(
        self, req: InferRequest, ctx: RequestContext
    ) -> AsyncGenerator[BackendEvent, None]:
        """Yield the words of the input (up to ``max_tokens``), then a :class:`GenerationEnd`."""
        words = self._source(req).split(" ")
        limit = req.params.max_tokens
        n = 0
        for i, word in enumerate(words[:limit]):
            if ctx.cancelled.is_set():
                yield GenerationEnd("cancelled", len(words), n)
                return
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            n += 1
            yield word if i == 0 else " " + word
        yield GenerationEnd("length" if len(words) > limit else "stop", len(words), n)
