"""``edge`` and ``auto`` batch lines: the device's idle capacity, interactive requests first.

    runner = LocalLines(store, run_local=..., idle=..., link_up=...)
    await runner.run()          # forever: one line at a time from the consumer ``local``

A line starts only while no interactive request waits or runs (``idle()``), and the check is
made again just before it starts, so an interactive request that came in meanwhile goes
first. One that comes in while a line runs (``load()`` counts more than that line) stops
the line at once; the line starts again, from the beginning, at the next idle moment. An ``auto`` line that finds the device busy while the hub can be reached goes to the
hub instead (output ``tier: cloud, reason: load``); an ``edge`` line (or an ``auto`` line
with the link down) waits for idle time. Each output line records its tier, its reason and
``started_at`` (when the device began it, Unix seconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from edge_agent.batches.records import DONE, output_line
from edge_agent.batches.service import error_item
from edge_agent.batches.store import BatchStore
from shared.batch_wire import LOCAL_CONSUMER, BatchLine, BatchWireError, decode_wire
from shared.tasks import cancel_and_wait

#: ``(endpoint, body) -> (status code, OpenAI response body)`` on the local model.
RunLocal = Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
#: How often a waiting line looks again whether the device is idle.
IDLE_POLL_S = 0.02
#: The ``Nats-Msg-Id`` suffix of an ``auto`` line moved to the hub (the local copy used the
#: plain line id, and the stream would drop a second message with the same id).
MOVED_SUFFIX = ".hub"


class LocalLines:
    """Runs the device's own batch lines on idle capacity (see the module doc)."""

    def __init__(
        self,
        store: BatchStore,
        *,
        run_local: RunLocal,
        idle: Callable[[], bool],
        link_up: Callable[[], bool],
        load: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.run_local = run_local
        self.idle = idle
        self.link_up = link_up
        self.load = load
        self.clock = clock
        #: Lines stopped to let an interactive request go first (and run again later).
        self.preempted = 0

    async def run(self) -> None:
        """Take lines one at a time, forever (each is acknowledged once it is answered)."""
        sub = await self.store.js.pull_subscribe_bind(LOCAL_CONSUMER, stream=self.store.stream)
        while True:
            if not self.idle() and not self.link_up():
                await asyncio.sleep(IDLE_POLL_S)  # nothing can run now and nothing can move
                continue
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except Exception:  # nothing queued (timeout) or the leaf restarting: ask again
                continue
            for msg in msgs:
                try:
                    line = decode_wire(msg.data, BatchLine)
                except BatchWireError:
                    await msg.term()
                    continue
                await self._line(line)
                await msg.ack()

    async def _line(self, line: BatchLine) -> None:
        rec = await self.store.get_batch(line.batch_id)
        if rec is None or rec.status in DONE or rec.status == "cancelling":
            return
        while True:
            while not self.idle():  # an interactive request waits or runs: it goes first
                if line.tier == "auto" and self.link_up():
                    moved = line.model_copy(update={"reason": "load"})
                    await self.store.publish_line(
                        moved, local=False, msg_id=line.line_id + MOVED_SUFFIX
                    )
                    return
                await asyncio.sleep(IDLE_POLL_S)
            started = round(self.clock(), 3)
            task = asyncio.ensure_future(self.run_local(rec.endpoint, line.body or {}))
            if await self._finished_unless_preempted(task):
                break
            self.preempted += 1
        status, body = task.result()
        ok = status == 200
        error = None if ok else body.get("error", error_item("failed", "local run failed"))
        out = output_line(
            batch_id=line.batch_id,
            index=line.index,
            custom_id=line.custom_id,
            body=body if ok else None,
            status_code=status,
            error=error,
            tier="edge",
            reason=line.reason,
            started_at=started,
        )
        await self.store.put_output(line.batch_id, line.index, ok=ok, line=out)

    async def _finished_unless_preempted(self, task: asyncio.Future[Any]) -> bool:
        """Wait for ``task``; cancel it (False) when an interactive request joins it."""
        while not task.done():
            await asyncio.wait({task}, timeout=IDLE_POLL_S)
            if not task.done() and self.load() > 1:
                await cancel_and_wait(task)  # a stop of this loop meanwhile is re-raised
                return False
        return True
