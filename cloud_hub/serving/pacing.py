"""Coalescing a back-end's events into bursts, so a stream sends one chunk per interval.

    async for burst in coalesced(backend.run(req, ctx), 0.02):
        chunk = framer.feed_many(burst)

The back-end is read by a task of its own; each burst is everything that arrived since the last
one, and bursts come at most every ``interval_s`` (the first at once). Fast token streams thus cost
one NATS message per interval instead of one per token; a slow one is not delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from shared.tasks import cancel_and_wait

__all__ = ["coalesced"]

T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc


async def coalesced(events: AsyncIterator[T], interval_s: float) -> AsyncIterator[list[T]]:
    """``events`` in bursts at most every ``interval_s`` seconds; a failure is re-raised in order."""
    if interval_s <= 0:
        async for event in events:
            yield [event]
        return
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                inbox.put_nowait(event)
        except Exception as exc:
            inbox.put_nowait(_Failed(exc))
            return
        inbox.put_nowait(_END)

    task = asyncio.create_task(pump())
    try:
        while True:
            items = [await inbox.get()]
            while not inbox.empty():
                items.append(inbox.get_nowait())
            burst: list[T] = []
            for item in items:
                if item is _END or isinstance(item, _Failed):
                    if burst:
                        yield burst
                    if isinstance(item, _Failed):
                        raise item.exc
                    return
                burst.append(item)  # type: ignore[arg-type]
            sent = loop.time()
            yield burst
            if (pause := interval_s - (loop.time() - sent)) > 0:
                await asyncio.sleep(pause)
    finally:
        with contextlib.suppress(Exception):  # the pump's failure was already sent in order
            await cancel_and_wait(task)
