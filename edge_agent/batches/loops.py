"""The agent's batch loops: say hello to the hub, take in results, run ``edge`` lines, finalize.

    loops = BatchLoops(service, nc, domain="site1", hub_domain="hub", run_local=..., idle=...,
                       link_up=...)
    loops.start()        # background tasks; every step is idempotent, so a restart resumes
    await loops.stop()

- **hello**: every second, ``agl.v1.dev.<device>.batch.hello`` tells hub workers which JetStream
  domain the device's lines wait in; they pull them across the leaf as soon as the link is up.
- **results**: the device's results stream on the hub domain, read across the leaf; each result
  is recorded once per line (KV ``create``) and then acknowledged.
- **local**: ``edge``/``auto`` lines run on the local model only while no interactive request
  waits or runs (``idle()``); an ``auto`` line goes to the hub instead when the device is busy
  and the link is up.
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

from nats.aio.client import Client

from edge_agent.batches.records import DONE, BatchRecord, output_line
from edge_agent.batches.service import BatchService, error_item
from shared.batch_wire import (
    AGENT_CONSUMER,
    LOCAL_CONSUMER,
    BatchHello,
    BatchLine,
    BatchResult,
    BatchWireError,
    decode_wire,
    encode_wire,
    hello_subject,
    results_stream,
)

log = logging.getLogger("edge_agent.batches")

#: ``(endpoint, body) -> (status code, OpenAI response body)`` on the local model.
RunLocal = Callable[[str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
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
        link_up: Callable[[], bool],
    ) -> None:
        self.svc = service
        self.store = service.store
        self.nc = nc
        self.device = service.device
        self.domain = domain
        self.hub_js = nc.jetstream(domain=hub_domain)
        self.run_local = run_local
        self.idle = idle
        self.link_up = link_up
        self._tasks: list[asyncio.Task[None]] = []
        self._endpoints: dict[str, str] = {}

    def start(self) -> None:
        """Start the loops."""
        for name, loop in (
            ("hello", self._hello),
            ("results", self._results),
            ("local", self._local),
            ("sweep", self._sweep),
        ):
            self._tasks.append(asyncio.create_task(_forever(name, loop), name=f"batches-{name}"))

    async def stop(self) -> None:
        """Cancel the loops (state is in JetStream; nothing to flush)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

    async def _hello(self) -> None:
        hello = encode_wire(BatchHello(domain=self.domain))
        while True:
            with contextlib.suppress(Exception):  # no link, no hub: the next hello tries again
                await self.nc.publish(hello_subject(self.device), hello)
            await asyncio.sleep(HELLO_EVERY_S)

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
        if batch_id not in self._endpoints:
            rec = await self.store.get_batch(batch_id)
            if rec is None:
                return None
            self._endpoints[batch_id] = rec.endpoint
        return self._endpoints[batch_id]

    async def _record(self, res: BatchResult) -> None:
        endpoint = await self._endpoint(res.batch_id)
        if endpoint is None:
            return  # a deleted batch
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

    async def _local(self) -> None:
        sub = await self.svc.store.js.pull_subscribe_bind(LOCAL_CONSUMER, stream=self.store.stream)
        while True:
            while not self.idle():
                await asyncio.sleep(0.02)
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except Exception:
                continue
            for msg in msgs:
                try:
                    line = decode_wire(msg.data, BatchLine)
                except BatchWireError:
                    await msg.ack()
                    continue
                await self._run_local_line(line)
                await msg.ack()

    async def _run_local_line(self, line: BatchLine) -> None:
        rec = await self.store.get_batch(line.batch_id)
        if rec is None or rec.status in DONE or rec.status == "cancelling":
            return
        if line.tier == "auto" and not self.idle() and self.link_up():
            moved = line.model_copy(update={"reason": "load"})
            await self.store.publish_line(moved, local=False)
            return
        while not self.idle():  # an interactive request came in: it goes first
            await asyncio.sleep(0.02)
        status, body = await self.run_local(rec.endpoint, line.body or {})
        ok = status == 200
        out = output_line(
            batch_id=line.batch_id,
            index=line.index,
            custom_id=line.custom_id,
            body=body if ok else None,
            status_code=status,
            error=None if ok else body.get("error", error_item("failed", "local run failed")),
            tier="edge",
            reason=line.reason,
        )
        await self.store.put_output(line.batch_id, line.index, ok=ok, line=out)

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
        await self.store.drop_outputs(rec.id)
        log.info(
            "batch %s %s: %d answered, %d failed", rec.id, rec.status, rec.completed, rec.failed
        )

    async def _expire(self, rec: BatchRecord) -> None:
        for file_id in (rec.output_file_id, rec.error_file_id):
            if file_id:
                await self.store.delete_file(file_id)
        await self.store.delete_batch(rec.id)
        self._endpoints.pop(rec.id, None)


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
