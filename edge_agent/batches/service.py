"""What the Batch API routes call: upload files, create, read and cancel batches.

    svc = BatchService(store, device="dev-1", settings=settings.batches, line_request=...)
    rec = await svc.create({"input_file_id": f.id, "endpoint": "/v1/chat/completions",
                            "completion_window": "24h"}, idempotency_key=None)

Lines go into the device's stream before ``create`` answers, so a 507 (leaf store full) or a
429 (queue limits) is the answer to the request that caused it, and a batch that was accepted
is on disk. ``line_request`` (the API layer's seam) turns an OpenAI body into the hub's
request, or raises :class:`ApiError` for a line that is then reported in the error file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from edge_agent.batches.jsonl import InputFileError, check_endpoint, parse_input
from edge_agent.batches.records import DONE, BatchError, BatchRecord, FileRecord, new_id
from edge_agent.batches.settings import BatchSettings
from edge_agent.batches.store import BatchStore
from edge_agent.errors import ApiError
from shared.batch_wire import BatchLine
from shared.protocol import InferRequest

#: ``(endpoint, body) -> InferRequest`` for the hub; raises ApiError for a bad body.
LineRequest = Callable[[str, dict[str, Any]], InferRequest]
TIERS = ("cloud", "edge", "auto")
_WINDOW_S = {"24h": 86400}


def error_item(code: str, message: str) -> dict[str, Any]:
    """OpenAI's per-line error object."""
    return {"code": code, "message": message}


class BatchService:
    """The device's batches: every state change is written to JetStream first."""

    def __init__(
        self,
        store: BatchStore,
        *,
        device: str,
        settings: BatchSettings,
        line_request: LineRequest,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.device = device
        self.settings = settings
        self.line_request = line_request
        self.clock = clock
        self._lock = asyncio.Lock()
        #: Batches ``create`` is queueing right now (the sweep resumes only the others).
        self.queueing: set[str] = set()

    # files ------------------------------------------------------------------------------
    async def upload(self, filename: str, purpose: str, data: bytes) -> FileRecord:
        """Store an input file (``purpose`` must be ``batch``)."""
        if purpose != "batch":
            raise ApiError(
                400, f"purpose {purpose!r} is not supported; use purpose=batch", param="purpose"
            )
        if len(data) > self.settings.max_file_bytes:
            raise ApiError(413, self._too_big(len(data)), code="file_too_large", param="file")
        return await self.store.put_file(filename, purpose, data, now=self.clock())

    def _too_big(self, size: int) -> str:
        return (
            f"the file has {size} bytes; the limit is {self.settings.max_file_bytes} "
            "(setting batches.max_file_bytes); split it into several files"
        )

    async def file(self, file_id: str) -> FileRecord:
        """The file's record, or a 404."""
        rec = await self.store.get_file(file_id)
        if rec is None:
            raise ApiError(404, f"no file {file_id!r} on this device", code="file_not_found")
        return rec

    # batches ----------------------------------------------------------------------------
    async def batch(self, batch_id: str) -> BatchRecord:
        """The batch's record, or a 404 (another device's batch is never found here)."""
        rec = await self.store.get_batch(batch_id)
        if rec is None:
            raise ApiError(404, f"no batch {batch_id!r} on this device", code="batch_not_found")
        return rec

    async def create(self, body: dict[str, Any], *, idempotency_key: str | None) -> BatchRecord:
        """Validate, store and queue a batch; a repeat with the same key answers the first."""
        endpoint = _string(body, "endpoint")
        try:
            check_endpoint(endpoint)
        except InputFileError as exc:
            raise ApiError(400, str(exc), param="endpoint", code="invalid_endpoint") from None
        window = body.get("completion_window", "24h")
        if window not in _WINDOW_S:
            raise ApiError(400, "completion_window must be '24h'", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
        ):
            raise ApiError(400, "metadata must map strings to strings", param="metadata")
        tier = (metadata or {}).get("tier", "cloud")
        if tier not in TIERS:
            raise ApiError(
                400, f"metadata.tier {tier!r} is not one of cloud, edge, auto", param="metadata"
            )
        source = await self.file(_string(body, "input_file_id"))
        batch_id = new_id("batch_")
        if idempotency_key:
            first = await self.store.claim_key(_key(idempotency_key), batch_id)
            if first != batch_id:
                return await self.batch(first)
        now = int(self.clock())
        rec = BatchRecord(
            id=batch_id,
            endpoint=endpoint,
            input_file_id=source.id,
            completion_window=window,
            tier=tier,
            tier_set="tier" in (metadata or {}),
            metadata=metadata,
            idempotency_key=idempotency_key,
            created_at=now,
            expires_at=now + _WINDOW_S[window],
        )
        data = await self.store.file_content(source.id)
        try:
            parsed = parse_input(
                data, endpoint=endpoint, max_lines=self.settings.max_lines_per_batch
            )
        except InputFileError as exc:
            raise ApiError(
                400, str(exc), param="input_file_id", code="invalid_input_file"
            ) from None
        async with self._lock:  # the limit check and the queueing are one step per device
            await self._check_room(len(parsed.requests), len(data))
            rec.total = parsed.total
            self.queueing.add(rec.id)
            try:
                await self.store.save_batch(rec)
                await self.enqueue(rec, data)
            finally:
                self.queueing.discard(rec.id)
        return rec

    async def _check_room(self, lines: int, size: int) -> None:
        queued_lines, queued_bytes = await self.store.queued()
        s = self.settings
        if queued_lines + lines > s.max_queued_lines:
            raise ApiError(
                429,
                f"{queued_lines} lines already wait on this device and the batch adds {lines}; "
                f"the limit is {s.max_queued_lines} (setting batches.max_queued_lines); "
                "retry when earlier batches have drained",
                type="rate_limit_error",
                code="batch_queue_full",
            )
        if queued_bytes + size > s.max_queued_bytes:
            raise ApiError(
                429,
                f"{queued_bytes} bytes of lines already wait on this device and the batch adds "
                f"up to {size}; the limit is {s.max_queued_bytes} (setting batches.max_queued_bytes)",
                type="rate_limit_error",
                code="batch_queue_full",
            )

    async def enqueue(self, rec: BatchRecord, data: bytes) -> None:
        """Queue every line of ``rec`` (again after a restart: repeats are dropped by msg id)."""
        parsed = parse_input(
            data, endpoint=rec.endpoint, max_lines=self.settings.max_lines_per_batch
        )
        for err in parsed.errors:
            await self._fail_line(rec.id, err.index, err.custom_id, err.code, err.message)
        reason = "policy" if rec.tier_set else "default"
        try:
            for index, custom_id, body in parsed.requests:
                try:
                    request = self.line_request(rec.endpoint, body)
                except ApiError as exc:
                    await self._fail_line(
                        rec.id, index, custom_id, exc.code or "invalid_request", exc.message
                    )
                    continue
                line = BatchLine(
                    batch_id=rec.id,
                    index=index,
                    custom_id=custom_id,
                    request=request,
                    tier=rec.tier,
                    reason=reason,
                    body=body if rec.tier != "cloud" else None,
                )
                await self.store.publish_line(line, local=rec.tier != "cloud")
        except ApiError as exc:
            await self.store.purge_lines(rec.id)
            rec.status, rec.failed_at = "failed", int(self.clock())
            rec.errors.append(BatchError(code=exc.code or "failed", message=exc.message))
            await self.store.save_batch(rec)
            raise
        rec.status, rec.in_progress_at = "in_progress", int(self.clock())
        await self.store.save_batch(rec)

    async def _fail_line(
        self, batch_id: str, index: int, custom_id: str | None, code: str, message: str
    ) -> None:
        from edge_agent.batches.records import output_line

        line = output_line(
            batch_id=batch_id,
            index=index,
            custom_id=custom_id or f"line-{index + 1}",
            body=None,
            error=error_item(code, message),
        )
        await self.store.put_output(batch_id, index, ok=False, line=line)

    async def cancel(self, batch_id: str) -> BatchRecord:
        """Stop a batch: lines not yet taken are dropped; answered ones stay in its output."""
        rec = await self.batch(batch_id)
        if rec.status in DONE or rec.status == "cancelling":
            return rec
        await self.store.purge_lines(rec.id)
        rec.status, rec.cancelling_at = "cancelling", int(self.clock())
        await self.store.save_batch(rec)
        return rec


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} is required (a string)", param=name)
    return value


def _key(raw: str) -> str:
    import hashlib

    return hashlib.sha256(raw.encode()).hexdigest()[:32]
