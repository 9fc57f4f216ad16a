"""Files, batch records, lines and per-line outputs in the site leaf's JetStream (not memory).

    store = BatchStore(js, device="dev-1")
    await store.setup()                         # streams, consumers, KV buckets, object store
    rec = await store.put_file("in.jsonl", "batch", data, now=time.time())

On the leaf domain, per device: stream ``AGL_BATCH_<device>`` (lines; work queue, file storage,
``discard=new`` so that a full store refuses new lines instead of dropping old ones), KV
``AGL_BATCHMETA_<device>`` (file and batch records), KV ``AGL_BATCHOUT_<device>`` (one key per
answered line until the batch is finalized) and object store ``AGL_FILES_<device>``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from edge_agent.batches.records import BatchRecord, FileRecord, new_id
from edge_agent.errors import ApiError
from shared.batch_wire import (
    HUB_CONSUMER,
    LOCAL_CONSUMER,
    MSG_ID_HEADER,
    BatchLine,
    batch_stream,
    encode_wire,
    line_subject,
    lines_filter,
)

#: JetStream error codes that mean "the leaf's disk (or the stream's share of it) is full".
FULL_CODES = {10077, 10023, 10047, 10028}
#: Lines a hub worker may hold unacknowledged; a line not acked in ACK_WAIT_S is sent again.
MAX_ACK_PENDING = 512
#: The hub acks a line once its result is stored; a line pulled (``cloud_hub.control.batches``
#: FETCH = 128 at a time) waits for one of the hub's 8 run slots first, so FETCH / 8 line times
#: must fit in ACK_WAIT_S, or lines are delivered again (and may run twice on another hub).
ACK_WAIT_S = 60.0
#: A line this device runs itself may take as long as a local generation does.
LOCAL_ACK_WAIT_S = 900.0


def store_error(exc: Exception, what: str) -> ApiError:
    """A JetStream failure as a clear HTTP error (507 when the leaf's store is full)."""
    code = getattr(exc, "err_code", None)
    if code in FULL_CODES:
        return ApiError(
            507,
            f"the site's NATS leaf store is full ({what}: {getattr(exc, 'description', exc)}); "
            "existing batches are kept; free space (delete files, wait for batches to drain) "
            "or raise the leaf's max_file_store",
            type="server_error",
            code="leaf_store_full",
        )
    return ApiError(
        503,
        f"the site's NATS leaf could not {what} ({exc}); check that the leaf node is running",
        type="server_error",
        code="leaf_unavailable",
    )


class BatchStore:
    """The agent's batch state in JetStream (one device)."""

    def __init__(self, js: JetStreamContext, *, device: str) -> None:
        self.js = js
        self.device = device
        self.stream = batch_stream(device)
        self._meta: KeyValue | None = None
        self._out: KeyValue | None = None
        self._files: ObjectStore | None = None

    async def setup(self) -> None:
        """Create (or find) the stream, its consumers, the KV buckets and the object store."""
        d = self.device
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[lines_filter(d), lines_filter(d, local=True)],
                storage=StorageType.FILE,
                retention=RetentionPolicy.WORK_QUEUE,
                discard=DiscardPolicy.NEW,
                duplicate_window=3600.0,
            )
        )
        consumers = (
            (HUB_CONSUMER, lines_filter(d), ACK_WAIT_S),
            (LOCAL_CONSUMER, lines_filter(d, local=True), LOCAL_ACK_WAIT_S),
        )
        for name, subject, ack_wait in consumers:
            await self.js.add_consumer(
                self.stream,
                ConsumerConfig(
                    durable_name=name,
                    filter_subject=subject,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=ack_wait,
                    max_ack_pending=MAX_ACK_PENDING,
                ),
            )
        self._meta = await self.js.create_key_value(
            KeyValueConfig(bucket=f"AGL_BATCHMETA_{d}", storage=StorageType.FILE)
        )
        self._out = await self.js.create_key_value(
            KeyValueConfig(bucket=f"AGL_BATCHOUT_{d}", storage=StorageType.FILE)
        )
        self._files = await self.js.create_object_store(
            f"AGL_FILES_{d}", config=ObjectStoreConfig(storage=StorageType.FILE)
        )

    @property
    def meta(self) -> KeyValue:
        assert self._meta is not None, "call setup() first"
        return self._meta

    @property
    def out(self) -> KeyValue:
        assert self._out is not None, "call setup() first"
        return self._out

    @property
    def files(self) -> ObjectStore:
        assert self._files is not None, "call setup() first"
        return self._files

    # files ------------------------------------------------------------------------------
    async def put_file(
        self, filename: str, purpose: str, data: bytes, *, now: float, expires_at: int | None = None
    ) -> FileRecord:
        """Store ``data`` and its record; a full leaf is a 507."""
        rec = FileRecord(
            id=new_id("file-"),
            filename=filename,
            purpose=purpose,
            bytes=len(data),
            created_at=int(now),
            expires_at=expires_at,
        )
        try:
            await self.files.put(rec.id, data)
            await self.meta.put(f"file.{rec.id}", rec.model_dump_json().encode())
        except nats.js.errors.APIError as exc:
            raise store_error(exc, "store the file") from None
        return rec

    async def get_file(self, file_id: str) -> FileRecord | None:
        """The file's record, or None."""
        raw = await self._get(f"file.{file_id}")
        return None if raw is None else FileRecord.model_validate_json(raw)

    async def file_content(self, file_id: str) -> bytes:
        """The file's bytes."""
        result = await self.files.get(file_id)
        return result.data or b""

    async def delete_file(self, file_id: str) -> None:
        """Remove the file and its record."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.files.delete(file_id)
        await self.meta.purge(f"file.{file_id}")

    async def records(self, kind: str) -> list[dict[str, Any]]:
        """Every ``file`` or ``batch`` record, as dicts."""
        out = []
        for key in await self._keys(self.meta, f"{kind}.*"):
            raw = await self._get(key)
            if raw is not None:
                out.append(json.loads(raw))
        return out

    async def _keys(self, bucket: KeyValue, pattern: str) -> list[str]:
        # The stream's per-subject state: one request, whatever the number of keys (nats-py's
        # KeyValue.keys(filters=…) ignores its filters across a JetStream domain).
        name = bucket._name  # the bucket name, as nats-py keeps it
        info = await self.js.stream_info(f"KV_{name}", subjects_filter=f"$KV.{name}.{pattern}")
        prefix = len(f"$KV.{name}.")
        return sorted(subject[prefix:] for subject in (info.state.subjects or {}))

    # batches ----------------------------------------------------------------------------
    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        """The batch's record, or None."""
        raw = await self._get(f"batch.{batch_id}")
        return None if raw is None else BatchRecord.model_validate_json(raw)

    async def save_batch(self, rec: BatchRecord) -> None:
        """Write the batch's record."""
        try:
            await self.meta.put(f"batch.{rec.id}", rec.model_dump_json().encode())
        except nats.js.errors.APIError as exc:
            raise store_error(exc, "save the batch") from None

    async def claim_key(self, key: str, batch_id: str) -> str:
        """The batch id already bound to idempotency ``key``, else bind ``batch_id`` to it."""
        name = f"idem.{key}"
        try:
            await self.meta.create(name, batch_id.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            raw = await self._get(name)
            return raw.decode() if raw else batch_id
        return batch_id

    async def delete_batch(self, batch_id: str) -> None:
        """Forget the batch's record."""
        await self.meta.purge(f"batch.{batch_id}")

    async def queued(self) -> tuple[int, int]:
        """Lines and bytes waiting in the device's stream."""
        info = await self.js.stream_info(self.stream)
        return info.state.messages, info.state.bytes

    async def publish_line(
        self, line: BatchLine, *, local: bool, msg_id: str | None = None
    ) -> None:
        """Store one line (``Nats-Msg-Id``, the line id by default, makes a repeat a no-op).

        A full store is a 507.
        """
        try:
            await self.js.publish(
                line_subject(self.device, line.batch_id, local=local),
                encode_wire(line),
                stream=self.stream,
                headers={MSG_ID_HEADER: msg_id or line.line_id},
            )
        except nats.js.errors.APIError as exc:
            raise store_error(exc, "queue the batch's lines") from None

    async def purge_lines(self, batch_id: str) -> None:
        """Drop the batch's lines that no one has taken yet."""
        for local in (False, True):
            await self.js.purge_stream(
                self.stream, subject=line_subject(self.device, batch_id, local=local)
            )

    # per-line outputs -------------------------------------------------------------------
    async def put_output(
        self, batch_id: str, index: int, *, ok: bool, line: dict[str, Any]
    ) -> bool:
        """Record one answered line once; False when it was already recorded (a repeat)."""
        kind = "ok" if ok else "fail"
        other = "fail" if ok else "ok"
        if await self._get(f"{batch_id}.{other}.{index}", bucket=self.out) is not None:
            return False
        try:
            await self.out.create(f"{batch_id}.{kind}.{index}", json.dumps(line).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def done_counts(self, batch_id: str) -> tuple[int, int]:
        """Lines answered and lines failed so far."""
        counts = []
        for kind in ("ok", "fail"):
            info = await self.js.stream_info(
                f"KV_AGL_BATCHOUT_{self.device}",
                subjects_filter=f"$KV.AGL_BATCHOUT_{self.device}.{batch_id}.{kind}.*",
            )
            counts.append(len(info.state.subjects or {}))
        return counts[0], counts[1]

    async def outputs(self, batch_id: str, kind: str) -> list[tuple[int, bytes]]:
        """The recorded lines of one kind, in input order."""
        found = []
        for key in await self._keys(self.out, f"{batch_id}.{kind}.*"):
            raw = await self._get(key, bucket=self.out)
            if raw is not None:
                found.append((int(key.rsplit(".", 1)[1]), raw))
        return sorted(found)

    async def drop_outputs(self, batch_id: str) -> None:
        """Forget the per-line records once the output files exist."""
        await self.js.purge_stream(
            f"KV_AGL_BATCHOUT_{self.device}",
            subject=f"$KV.AGL_BATCHOUT_{self.device}.{batch_id}.>",
        )

    async def _get(self, key: str, *, bucket: KeyValue | None = None) -> bytes | None:
        try:
            entry = await (bucket or self.meta).get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return entry.value
