"""The one event stream every executor yields (local, cloud, cascade).

    Start(model)  →  Pieces(...)*  →  GenerationEnd     (a whole answer)
    Start(model)  →  Pieces(...)*  →  Failure           (cut short: timeout, hub died, …)

``Pieces`` carries one or more token pieces (with log-probabilities when they were asked for and
the source gives them); the local executor batches the tokens that arrived since the reader last
woke. ``GenerationEnd`` (from ``shared.runtimes.types``) is the one end-of-generation type on
both sides of the wire. The formatter (``edge_agent.api.formatter``) is the only reader that
turns events into bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from shared.runtimes.types import GenerationEnd, TokenPiece

__all__ = [
    "Event",
    "Failure",
    "GenerationEnd",
    "Pieces",
    "Start",
    "TokenPiece",
    "paced",
    "replay",
]


@dataclass(frozen=True, slots=True)
class Start:
    """An answer begins; ``model`` is the model that makes it (a local id or a hub model)."""

    model: str


@dataclass(frozen=True, slots=True)
class Pieces:
    """Generated text: one or more token pieces, in order."""

    pieces: Sequence[TokenPiece]

    @property
    def text(self) -> str:
        """The pieces' text joined."""
        p = self.pieces
        return p[0].text if len(p) == 1 else "".join(x.text for x in p)


@dataclass(frozen=True, slots=True)
class Failure:
    """The answer could not be finished; ``status`` is what a non-streamed answer returns."""

    status: int
    code: str
    message: str
    type: str = "server_error"


Event = Start | Pieces | GenerationEnd | Failure


async def replay(
    held: Iterable[Event], rest: AsyncIterator[Event] | None = None
) -> AsyncIterator[Event]:
    """Yield events already read (``held``), then the rest of the stream they came from."""
    for event in held:
        yield event
    if rest is not None:
        try:
            async for event in rest:
                yield event
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()


async def paced(events: AsyncIterator[Event], interval_s: float) -> AsyncIterator[Event]:
    """``events``, with text sent at most every ``interval_s`` seconds (the first at once).

    After each ``Pieces`` it lets the tokens that arrive during the rest of the interval pile up,
    so a stream costs one wake-up and one chunk per interval instead of one per token. It paces
    what the client gets: text a plugin holds back never reached it, so it never costs a pause.
    """
    if interval_s <= 0:
        async for event in events:
            yield event
        return
    loop = asyncio.get_running_loop()
    try:
        async for event in events:
            sent = loop.time()
            yield event
            if isinstance(event, Pieces) and (pause := interval_s - (loop.time() - sent)) > 0:
                await asyncio.sleep(pause)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
