"""Hub workers for deferred batch lines: pull them from each site's leaf, answer, send results.

    worker = BatchWorker(nc, backends, domain="hub")  # the hub's connection, back-ends, domain
    await worker.start()                     # listens for agl.v1.dev.*.batch.hello
    await worker.stop()

A device says which JetStream domain its lines wait in (``batch.hello``, queue group ``hub``
so one hub worker answers). From then on a task per device pulls ``AGL_BATCH_<device>``
(consumer ``hub``) across the leaf with that domain's API (``$JS.<domain>.API``): while the
link is down the pull fails and is retried every quarter second, so lines flow within about a
second of the link coming back, with no action from anyone. Each line runs through the hub's
back-ends; its result goes to the device's results stream on the hub's JetStream domain
(``HubSettings.jetstream_domain``, default ``hub``; ``AGL_BATCHRES_<device>``, ``Nats-Msg-Id`` = line id), then the line is marked done in KV
``agl_batch_done`` and acknowledged. A line delivered again (an ack lost with the link) is
found in ``agl_batch_done`` and only acknowledged: it is never run twice.
The device id comes from the subject (server permissions enforce it), never from a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from cloud_hub.backends import Backend, RequestContext
from shared.batch_wire import (
    AGENT_CONSUMER,
    HELLO_WILDCARD,
    HUB_CONSUMER,
    MSG_ID_HEADER,
    BatchHello,
    BatchLine,
    BatchResult,
    BatchWireError,
    LineFailure,
    batch_stream,
    decode_wire,
    device_of,
    encode_wire,
    pull_inbox,
    result_subject,
    results_stream,
)
from shared.protocol import ResultMessage, Usage
from shared.runtimes.types import GenerationEnd, TokenPiece
from shared.tasks import stop_tasks

log = logging.getLogger("cloud_hub.batches")

QUEUE_GROUP = "hub"
DONE_BUCKET = "agl_batch_done"
#: Lines per pull; FETCH / concurrency line times must fit ACK_WAIT_S (docs/architecture.md).
FETCH = 128
#: Results wait at most this long for their device to read them.
RESULTS_MAX_AGE_S = 7 * 86400.0
MAX_DEVICES = 100_000


class BatchWorker:
    """Pulls every known device's lines and answers them (see the module doc)."""

    def __init__(
        self,
        nc: Client,
        backends: Mapping[str, Backend],
        *,
        domain: str | None = None,
        concurrency: int = 8,
    ) -> None:
        self.nc = nc
        self.backends = backends
        #: The hub's own JetStream (``domain``: the name edge sites use to reach it).
        self.js = nc.jetstream(domain=domain)
        self._sem = asyncio.Semaphore(concurrency)
        self._devices: dict[str, asyncio.Task[None]] = {}
        self._domains: dict[str, str] = {}
        self._sub: Subscription | None = None
        self._done: KeyValue | None = None
        #: Lines run (not counting repeats that were only acknowledged), for tests and benchmarks.
        self.ran = 0
        self.repeats = 0

    async def start(self) -> None:
        """Create the done-bucket and listen for devices' hellos."""
        self._done = await self.js.create_key_value(
            KeyValueConfig(bucket=DONE_BUCKET, storage=StorageType.FILE, ttl=RESULTS_MAX_AGE_S)
        )
        self._sub = await self.nc.subscribe(HELLO_WILDCARD, queue=QUEUE_GROUP, cb=self._on_hello)

    @classmethod
    async def start_on(
        cls, nc: Client, backends: Mapping[str, Backend], *, domain: str | None = None
    ) -> BatchWorker | None:
        """A started worker, or None (logged) when the hub's NATS has no JetStream."""
        worker = cls(nc, backends, domain=domain)
        try:
            await worker.start()
        except nats.errors.Error as exc:
            hint = "give the server that jetstream domain (shared/templates/hub.conf) or set "
            log.warning(
                "deferred batches off: no JetStream in domain %r (%s); %s",
                domain,
                exc,
                hint + "the hub's jetstream_domain to the server's domain",
            )
            return None
        return worker

    async def stop(self) -> None:
        """Stop pulling; lines not acknowledged are delivered again later."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        tasks, self._devices = list(self._devices.values()), {}
        await stop_tasks(tasks)

    async def _on_hello(self, msg: Msg) -> None:
        try:
            device = device_of(msg.subject)
            hello = decode_wire(msg.data, BatchHello)
        except BatchWireError as exc:
            log.warning("ignored a batch hello on %s: %s", msg.subject, exc)
            return
        task = self._devices.get(device)
        if task is not None and not task.done() and self._domains.get(device) == hello.domain:
            return
        if len(self._devices) >= MAX_DEVICES and device not in self._devices:
            log.warning("batch hello from %s ignored: %d devices already", device, MAX_DEVICES)
            return
        if task is not None:
            task.cancel()
        self._domains[device] = hello.domain
        self._devices[device] = asyncio.create_task(
            self._pull(device, hello.domain), name=f"batches-{device}"
        )

    async def _results_stream(self, device: str) -> None:
        name = results_stream(device)
        await self.js.add_stream(
            StreamConfig(
                name=name,
                subjects=[result_subject(device, ">")],
                storage=StorageType.FILE,
                retention=RetentionPolicy.WORK_QUEUE,
                max_age=RESULTS_MAX_AGE_S,
                duplicate_window=3600.0,
            )
        )
        await self.js.add_consumer(
            name, ConsumerConfig(durable_name=AGENT_CONSUMER, ack_policy=AckPolicy.EXPLICIT)
        )

    async def _pull(self, device: str, domain: str) -> None:
        await self._results_stream(device)
        remote = self.nc.jetstream(domain=domain)
        inbox, sub = pull_inbox(device).encode(), None
        try:
            while True:
                try:
                    if sub is None:
                        sub = await remote.pull_subscribe_bind(  # answered on device subjects
                            HUB_CONSUMER, stream=batch_stream(device), inbox_prefix=inbox
                        )
                    msgs = await sub.fetch(FETCH, timeout=1.0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # link down or nothing queued: pull again shortly
                    if not isinstance(exc, nats.errors.TimeoutError):
                        log.debug("batch pull for %s: %s", device, exc)
                        await asyncio.sleep(0.25)
                    continue
                await asyncio.gather(*(self._line(device, m) for m in msgs))
        finally:
            if sub is not None:  # a pull subscription left behind holds up the hub's drain
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _line(self, device: str, msg: Msg) -> None:
        assert self._done is not None
        try:
            line: BatchLine = decode_wire(msg.data, BatchLine)
        except BatchWireError as exc:
            log.warning("dropped a bad batch line from %s: %s", device, exc)
            await msg.term()
            return
        key = f"{device}.{line.batch_id}.{line.index}"
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            await self._done.get(key)
            self.repeats += 1
            await msg.ack()
            return
        async with self._sem:
            result = await self._run(device, line)
        await self.js.publish(
            result_subject(device, line.batch_id),
            encode_wire(result),
            stream=results_stream(device),
            headers={MSG_ID_HEADER: line.line_id},
        )
        await self._done.put(key, b"1")
        self.ran += 1
        await msg.ack()

    async def _run(self, device: str, line: BatchLine) -> BatchResult:
        req = line.request.model_copy(update={"device": device, "stream": False})
        base = {
            "batch_id": line.batch_id,
            "index": line.index,
            "custom_id": line.custom_id,
            "reason": line.reason,
        }
        backend = self.backends.get(req.model)
        if backend is None or req.kind not in backend.kinds:
            served = ", ".join(sorted(self.backends)) or "none"
            failure = LineFailure(
                code="unknown_model",
                message=f"the hub does not serve {req.model!r} for {req.kind}; it serves: {served}",
            )
            return BatchResult(**base, error=failure)
        text: list[str] = []
        end: GenerationEnd | None = None
        try:
            async for event in backend.run(req, RequestContext()):
                if isinstance(event, GenerationEnd):
                    end = event
                elif isinstance(event, TokenPiece):
                    text.append(event.text)
                else:
                    text.append(event)
        except Exception as exc:  # a back-end failure is this line's error, not the worker's
            log.warning("batch line %s of %s failed: %s", line.line_id, device, exc)
            return BatchResult(**base, error=LineFailure(code="backend_error", message=str(exc)))
        end = end or GenerationEnd("stop", 0, 0)
        result = ResultMessage(
            id=req.id,
            model=req.model,
            text="".join(text),
            finish_reason=end.finish_reason,
            usage=Usage(prompt_tokens=end.prompt_tokens, completion_tokens=end.completion_tokens),
        )
        return BatchResult(**base, result=result)
