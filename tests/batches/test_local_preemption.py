"""The local batch loop's preemption wait: it gives way to interactive load, and never swallows
the cancellation that stops the loop itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge_agent.batches.local import LocalLines


def lines(load: int) -> LocalLines:
    # The wait only reads the load; the store, runner and link are never touched by it.
    unused: Any = None
    return LocalLines(unused, run_local=unused, idle=unused, link_up=unused, load=lambda: load)


async def test_a_line_gives_way_when_an_interactive_request_joins() -> None:
    line = asyncio.create_task(asyncio.sleep(60))
    assert await lines(load=2)._finished_unless_preempted(line) is False
    assert line.cancelled()


async def test_a_line_that_finishes_is_reported_finished() -> None:
    line = asyncio.create_task(asyncio.sleep(0.05))
    assert await lines(load=0)._finished_unless_preempted(line) is True


async def test_stopping_the_loop_while_it_cancels_a_line_stops_the_loop() -> None:
    cancelling = asyncio.Event()

    async def slow_to_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelling.set()
            await asyncio.sleep(0.5)  # the line takes a moment to wind down
            raise

    line = asyncio.create_task(slow_to_cancel())
    waiter = asyncio.create_task(lines(load=2)._finished_unless_preempted(line))
    await cancelling.wait()
    waiter.cancel()  # the loop is stopped while it waits for the line
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()
