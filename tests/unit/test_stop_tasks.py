"""Stopping background tasks: a lost cancellation must not hang the agent's shutdown."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared.tasks import cancel_and_wait, stop_tasks


async def swallows_one_cancel(started: asyncio.Event) -> None:
    """Stands in for a loop whose cancel was lost (as 3.11's wait_for can): it runs on."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(60)
    while True:
        await asyncio.sleep(0.01)


async def ignores_cancels(started: asyncio.Event, until: asyncio.Event) -> None:
    started.set()
    while not until.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.02)


async def test_a_task_that_lost_its_cancel_is_cancelled_again_and_ends() -> None:
    started = asyncio.Event()
    lost = asyncio.create_task(swallows_one_cancel(started), name="lost")
    plain = asyncio.create_task(asyncio.sleep(60), name="plain")
    await started.wait()
    assert await stop_tasks([lost, plain], within_s=10) == 0
    assert lost.cancelled() and plain.cancelled()


async def test_a_task_that_never_stops_is_left_behind_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, until = asyncio.Event(), asyncio.Event()
    stubborn = asyncio.create_task(ignores_cancels(started, until), name="stubborn-loop")
    await started.wait()
    assert await stop_tasks([stubborn], within_s=0.2) == 1
    assert not stubborn.done()
    assert "stubborn-loop did not stop within 0.2 s" in caplog.text
    until.set()  # let it end, for the test's event loop
    await stubborn


async def test_finished_tasks_and_no_tasks_return_at_once() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    assert await stop_tasks([done]) == 0
    assert await stop_tasks([]) == 0


async def test_a_task_that_had_failed_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("connect refused")

    failed = asyncio.create_task(fails(), name="connector")
    await asyncio.wait({failed})
    assert await stop_tasks([failed]) == 0
    assert "connector had stopped with an error: connect refused" in caplog.text


async def test_cancel_and_wait_ends_the_child_and_returns() -> None:
    child = asyncio.create_task(asyncio.sleep(60))
    await cancel_and_wait(child)
    assert child.cancelled()


async def test_cancel_and_wait_passes_on_the_childs_error() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    child = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(child)


async def test_cancel_and_wait_never_swallows_the_callers_own_cancellation() -> None:
    winding_down = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            winding_down.set()
            await asyncio.sleep(0.5)
            raise

    child = asyncio.create_task(slow_to_stop())
    caller = asyncio.create_task(cancel_and_wait(child))
    await winding_down.wait()
    caller.cancel()  # the caller is stopped while it waits for its child
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
