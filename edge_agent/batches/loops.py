"""The agent's batch loops: say hello to the hub, take in results, run ``edge`` lines, finalize.

    loops = BatchLoops(service, nc, domain="site1", hub_domain="hub", run_local=..., idle=...,
                       cloud_allowed=...)
    loops.start()        # background tasks; every step is idempotent, so a restart resumes
    await loops.stop()

- **hello**: every second, ``agl.v1.dev.<device>.batch.hello`` tells hub workers which JetStream
  domain the device's lines wait in; they pull them across the leaf as soon as the link is up.
  The same loop asks the hub's JetStream (across the leaf) whether it can be reached: that is
  ``link_up()``.
- **results**: the device's results stream on the hub domain, read across the leaf; each result
  is recorded once per line (KV ``create``) and then acknowledged.
- **local**: ``edge``/``auto`` lines on idle capacity (:mod:`edge_agent.batches.local`).
- **sweep**: counts, finalizing (output and error files), resuming ``validating`` batches after
  a restart, and retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors
from nats.aio.client import Client

from edge_agent.batches.local import LocalLines, RunLocal
from edge_agent.batches.records import DONE, BatchRecord, output_line
from edge_agent.batches.service import BatchService, error_item
from shared.batch_wire import (
    AGENT_CONSUMER,
    BatchHello,
    BatchResult,
    BatchWireError,
    decode_wire,
    encode_wire,
    hello_subject,
    results_stream,
)
from shared.tasks import stop_tasks

log = logging.getLogger("edge_agent.batches")

__all__ = ["BatchLoops", "RunLocal", "completion_body"]

HELLO_EVERY_S = 1.0
SWEEP_EVERY_S = 0.5
FETCH = 64


def completion_body(result: Any, *, chat: bool, created: int) -> dict[str, Any]:
    """OpenAI's (chat) completion object for a hub ``ResultMessage``."""
    usage = {
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "total_tokens": result.usage.prompt_tokens + result.usage.completion_tokens,
    }
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "logprobs": None,
            "finish_reason": result.finish_reason,
        }
        return {
            "id": f"chatcmpl-{result.id}",
            "object": "chat.completion",
            "created": created,
            "model": result.model,
            "choices": [choice],
            "usage": usage,
        }
    choice = {
        "index": 0,
        "text": result.text,
        "logprobs": None,
        "finish_reason": result.finish_reason,
    }
    return {
        "id": f"cmpl-{result.id}",
        "object": "text_completion",
        "created": created,
        "model": result.model,
        "choices": [choice],
        "usage": usage,
    }


class BatchLoops:
    """Background tasks of one device's batches (see the module doc)."""

    def __init__(
        self,
        service: BatchService,
        nc: Client,
        *,
        domain: str,
        hub_domain: str,
        run_local: RunLocal,
        idle: Callable[[], bool],
        cloud_allowed: Callable[[], bool] = lambda: True,
        load: Callable[[], int] = lambda: 0,
    ) -> None:
        self.svc = service
        self.store = service.store
        self.nc = nc
        self.device = service.device
        self.domain = domain
        self.hub_js = nc.jetstream(domain=hub_domain, timeout=2.0)
        self.cloud_allowed = cloud_allowed
        #: Whether the hub's JetStream answered the last probe across the leaf.
        self.hub_reachable = False
        self.local = LocalLines(
            self.store, run_local=run_local, idle=idle, link_up=self.link_up, load=load
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._endpoints: dict[str, str] = {}
        #: Batches finalized by this process: a late result for one is dropped.
        self._finished: set[str] = set()

    def link_up(self) -> bool:
        """The hub can be reached now (probe across the leaf) and the agent may use it."""
        return self.hub_reachable and self.cloud_allowed()

    def start(self) -> None:
        """Start the loops."""
        for name, loop in (
            ("hello", self._hello),
            ("results", self._results),
            ("local", self.local.run),
            ("sweep", self._sweep),
        ):
            self._tasks.append(asyncio.create_task(_forever(name, loop), name=f"batches-{name}"))

    async def stop(self) -> None:
        """Cancel the loops (state is in JetStream; nothing to flush)."""
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks)

    async def _hello(self) -> None:
        hello = encode_wire(BatchHello(domain=self.domain))
        while True:
            with contextlib.suppress(Exception):  # no link, no hub: the next hello tries again
                await self.nc.publish(hello_subject(self.device), hello)
            self.hub_reachable = await self._probe_hub()
            await asyncio.sleep(HELLO_EVERY_S)

    async def _probe_hub(self) -> bool:
        try:
            await self.hub_js.stream_info(results_stream(self.device))
        except nats.js.errors.NotFoundError:
            return True  # the hub's JetStream answered; it has not made the stream yet
        except Exception:  # no responders / timeout: the link (or the hub's NATS) is down
            return False
        return True

    async def _results(self) -> None:
        sub = None
        while True:
            try:
                if sub is None:
                    sub = await self.hub_js.pull_subscribe_bind(
                        AGENT_CONSUMER, stream=results_stream(self.device)
                    )
                msgs = await sub.fetch(FETCH, timeout=1.0)
            except Exception as exc:  # link down, hub not set up yet: wait and retry
                log.debug("batch results: %s", exc)
                await asyncio.sleep(0.25)
                continue
            for msg in msgs:
                with contextlib.suppress(BatchWireError):
                    await self._record(decode_wire(msg.data, BatchResult))
                await msg.ack()

    async def _endpoint(self, batch_id: str) -> str | None:
        if batch_id in self._finished:
            return None
        if batch_id not in self._endpoints:
            rec = await self.store.get_batch(batch_id)
            if rec is None or rec.status in DONE:
                return None
            self._endpoints[batch_id] = rec.endpoint
        return self._endpoints[batch_id]

    async def _record(self, res: BatchResult) -> None:
        endpoint = await self._endpoint(res.batch_id)
        if endpoint is None:
            return  # a deleted or finished (e.g. cancelled) batch
        tier, reason = "cloud", res.reason
        if res.result is not None:
            body = completion_body(
                res.result, chat=endpoint.endswith("chat/completions"), created=int(time.time())
            )
            line = output_line(
                batch_id=res.batch_id,
                index=res.index,
                custom_id=res.custom_id,
                body=body,
                tier=tier,
                reason=reason,
            )
        else:
            err = res.error
            code, message = (err.code, err.message) if err else ("failed", "the hub failed")
            line = output_line(
                batch_id=res.batch_id,
                index=res.index,
                custom_id=res.custom_id,
                body=None,
                error=error_item(code, message),
                tier=tier,
                reason=reason,
            )
        await self.store.put_output(res.batch_id, res.index, ok=res.result is not None, line=line)

    async def _sweep(self) -> None:
        while True:
            for raw in await self.store.records("batch"):
                rec = BatchRecord.model_validate(raw)
                await self._advance(rec)
            await asyncio.sleep(SWEEP_EVERY_S)

    async def _advance(self, rec: BatchRecord) -> None:
        now = int(time.time())
        if rec.status in DONE:
            if rec.completed_at and now > rec.completed_at + self.svc.settings.retention_s:
                await self._expire(rec)
            return
        if rec.status == "validating":  # the agent stopped while queueing: finish it
            if rec.id not in self.svc.queueing:  # (not the batch create() is queueing now)
                await self.svc.enqueue(rec, await self.store.file_content(rec.input_file_id))
            return
        ok, failed = await self.store.done_counts(rec.id)
        if (ok, failed) != (rec.completed, rec.failed):
            rec.completed, rec.failed = ok, failed
            await self.store.save_batch(rec)
        if ok + failed >= rec.total or rec.status == "cancelling":
            await self._finalize(rec)

    async def _finalize(self, rec: BatchRecord) -> None:
        now = int(time.time())
        expires = now + int(self.svc.settings.retention_s)
        for kind, attr in (("ok", "output_file_id"), ("fail", "error_file_id")):
            lines = await self.store.outputs(rec.id, kind)
            if lines:
                data = b"".join(raw + b"\n" for _, raw in lines)
                name = f"{rec.id}_{'output' if kind == 'ok' else 'error'}.jsonl"
                f = await self.store.put_file(
                    name, "batch_output", data, now=now, expires_at=expires
                )
                setattr(rec, attr, f.id)
        if rec.status == "cancelling":
            rec.status, rec.cancelled_at = "cancelled", now
        else:
            rec.status, rec.finalizing_at, rec.completed_at = "completed", now, now
        rec.completed_at = rec.completed_at or now
        await self.store.save_batch(rec)
        self._finished.add(rec.id)
        self._endpoints.pop(rec.id, None)
        await self.store.drop_outputs(rec.id)
        log.info(
            "batch %s %s: %d answered, %d failed", rec.id, rec.status, rec.completed, rec.failed
        )

    async def _expire(self, rec: BatchRecord) -> None:
        for file_id in (rec.output_file_id, rec.error_file_id):
            if file_id:
                await self.store.delete_file(file_id)
        await self.store.delete_batch(rec.id)
        self._finished.discard(rec.id)


async def _forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop``; log and restart it after an unexpected error (never a silent stop)."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch %s loop failed; restarting it in 1 s", name)
            await asyncio.sleep(1.0)
