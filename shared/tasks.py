"""Stopping background tasks so that a shutdown never hangs on one (edge and hub).

    left = await stop_tasks([heartbeat_task, watch_task], within_s=5)
    await cancel_and_wait(child)   # a helper task of the caller's own work

A cancellation can be lost: on Python 3.11 ``asyncio.wait_for`` (which nats-py calls inside
every request) drops one that arrives just as its inner call completes, and a ``while True``
loop that lost it runs on. ``task.cancel(); await task`` then waits forever, and the process
never exits on SIGTERM. Here every round cancels what still runs again, and after
``within_s`` the rest is logged and left behind. A task that had already failed is logged,
not raised: the shutdown goes on.

The other half: ``task.cancel(); with suppress(CancelledError): await task`` also swallows a
cancellation of the *caller* that arrives while it waits, and the caller's loop runs on.
:func:`cancel_and_wait` ends the child's cancellation there but re-raises the caller's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between two cancels of a task that is still running.
_ROUND_S = 0.5


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], *, within_s: float = 5.0) -> int:
    """Cancel ``tasks`` until they end, for at most ``within_s``; how many are left running."""
    given = list(tasks)
    pending = {t for t in given if not t.done()}
    deadline = time.monotonic() + within_s
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_ROUND_S)
        if pending and time.monotonic() >= deadline:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.warning("%s did not stop within %g s; leaving them behind", names, within_s)
            break
    for task in given:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            log.warning("%s had stopped with an error: %s", task.get_name(), error)
    return len(pending)


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; its own cancellation ends here.

    An error the task raised propagates. If the caller is itself being cancelled meanwhile,
    that cancellation propagates too (never swallowed).
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
