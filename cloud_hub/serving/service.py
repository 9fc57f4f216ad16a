"""The hub's NATS inference service (``nats.micro`` service ``agl-hub``).

One endpoint per model on ``agl.v1.dev.*.infer.<model>`` (queue group ``hub``; ``$SRV.*``
finds it). The device is the subject's; a reply outside its inbox is dropped (``replies``).
Requests pass ``admission.admit`` in the callback and run in a task (``answering``); cancels
(``agl.v1.dev.*.cancel.*``) stop only that device's request; bad messages get error replies.
Embedding the hub in another program (an all-in-one launcher, a test)::

    async with running_hub(settings) as hub:   # connects, loads models, subscribes
        ...                                    # leaving drains in-flight requests
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from prometheus_client import CollectorRegistry

from cloud_hub import __version__
from cloud_hub.backends import Backend, RequestContext, start_backends
from cloud_hub.control.batches import BatchWorker
from cloud_hub.control.intake import HeartbeatIntake
from cloud_hub.errors import HubError
from cloud_hub.serving.admission import Refused, admit, endpoints
from cloud_hub.serving.answering import FinishedRequest, answer
from cloud_hub.serving.connection import connect
from cloud_hub.serving.interest import start_watch
from cloud_hub.serving.models_info import ModelsAnswer
from cloud_hub.serving.replies import ErrorStats, ReplyGuard, reply_subject, send_error
from cloud_hub.settings import HubSettings
from shared.protocol import InferRequest
from shared.subjects import CANCEL_WILDCARD, QUEUE_GROUP, parse_subject
from shared.telemetry import Instruments, Telemetry

log = logging.getLogger(__name__)
SERVICE_NAME = "agl-hub"


class HubService:
    """Serves the configured models over NATS until :meth:`drain` is called."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        backends: Mapping[str, Backend] | None = None,
        nc: Client | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry or Telemetry.disabled(component="hub")
        #: Prometheus registry (served by ``serve()`` on ``metrics_port``) + OTel instruments.
        self.metrics = Instruments(self.telemetry, CollectorRegistry(), client_calls=False)
        self._running: Counter[str] = Counter()
        self.metrics.watch_gauge(
            otel_name="agl.queue.depth",
            prom_name="agl_queue_depth",
            description="Generations waiting or running, per model",
            label="model",
            read=lambda: {m: float(n) for m, n in self._running.items()},
        )
        self.backends: dict[str, Backend] = dict(backends or {})
        self.finished: deque[FinishedRequest] = deque(maxlen=1000)
        self._nc = nc
        self._owns_nc = nc is None
        self._service: Service | None = None
        self._cancel_sub: Subscription | None = None
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._inflight: dict[tuple[str, str], RequestContext] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._kinds: dict[str, frozenset[str]] = {}
        #: Heartbeats → the device registry (KV ``agl_devices``), after :meth:`start`.
        self.intake: HeartbeatIntake | None = None
        self.batches: BatchWorker | None = None  # deferred lines (control.batches)
        self.models_answer: ModelsAnswer | None = None  # agl.v1.dev.*.models
        self._guard = ReplyGuard(self.metrics.registry)
        self._draining = False
        self._closed = False

    @property
    def nc(self) -> Client:
        """The NATS connection (after :meth:`start`)."""
        if self._nc is None:
            raise HubError("the hub is not started; call start() first")
        return self._nc

    @property
    def service_id(self) -> str:
        """This worker's ``nats.micro`` instance id."""
        return self._service.id if self._service else ""

    @property
    def in_flight(self) -> int:
        """Requests being served right now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Load the models, connect to NATS and subscribe the endpoints."""
        self.backends = await start_backends(self.settings, self.backends, metrics=self.metrics)
        self._kinds = {name: b.kinds for name, b in self.backends.items()}
        nc = self._nc = self._nc or await connect(self.settings, name=SERVICE_NAME)
        self._service = await add_service(
            nc,
            name=SERVICE_NAME,
            version=__version__,
            description="Open-AutoGLM inference hub",
            queue_group=QUEUE_GROUP,
            metadata={"models": ",".join(sorted(self.backends))},
        )
        for name, subject in endpoints(self.backends, self.settings.answer_unknown_models):
            await self._service.add_endpoint(
                name=name,
                subject=subject,
                handler=functools.partial(self._on_request, stats=ErrorStats(self._service, name)),
            )
        self._cancel_sub = await nc.subscribe(CANCEL_WILDCARD, cb=self._on_cancel)
        self.models_answer = await ModelsAnswer.start(nc, self.settings, self.backends)
        if self.settings.registry:
            self.intake = await HeartbeatIntake.start(nc, self.settings, self.metrics)
        self.batches = await BatchWorker.start_on(
            nc, self.backends, domain=self.settings.jetstream_domain
        )
        await nc.flush()
        log.info("hub %s serving %s", self.service_id, ", ".join(sorted(self.backends)))

    async def _on_cancel(self, msg: Msg) -> None:
        parsed = parse_subject(msg.subject)  # the device's own subject: only its requests
        ctx = self._inflight.get((parsed.device, parsed.arg)) if parsed is not None else None
        if ctx is not None:
            ctx.cancelled.set()

    async def _on_request(self, request: Request, stats: ErrorStats) -> None:
        # Runs in the subscription's delivery loop: answer or hand off to a task, never wait.
        if not self._guard.allows(request):
            return
        verdict = admit(
            request.subject,
            request.data,
            limit=self.settings.max_request_bytes or self.nc.max_payload,
            kinds=self._kinds,
            in_flight=self._inflight,
            draining=self._draining,
            slot_free=not self._sem.locked(),
            concurrency=self.settings.concurrency,
        )
        if isinstance(verdict, Refused):
            await send_error(request, verdict.reply(), stats=stats)
            return
        await self._sem.acquire()  # free: admit() saw a slot, and nothing ran since
        req = verdict.request
        ctx = RequestContext(headers=dict(request.headers or {}))
        self._inflight[verdict.key] = ctx
        backend = self.backends[verdict.backend]
        task = asyncio.create_task(
            self._serve(request, req, backend, ctx, key=verdict.key, stats=stats)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self,
        request: Request,
        req: InferRequest,
        backend: Backend,
        ctx: RequestContext,
        *,
        key: tuple[str, str],
        stats: ErrorStats,
    ) -> None:
        self._running[req.model] += 1
        watcher = start_watch(
            self.nc,
            reply_subject(request),
            req,
            ctx.cancelled,
            every_s=self.settings.interest_check_s,
        )
        try:
            end = await answer(
                request,
                req,
                backend,
                ctx,
                metrics=self.metrics,
                timeout_s=self.settings.request_timeout_s,
                max_payload=self.nc.max_payload,
                stats=stats,
                stream_interval_s=self.settings.stream_interval_ms / 1000,
            )
            if end is not None:
                self.finished.append(
                    FinishedRequest(req.id, req.model, end.finish_reason, end.completion_tokens)
                )
        finally:
            if watcher is not None:
                watcher.cancel()
            self._running[req.model] -= 1
            self._inflight.pop(key, None)
            self._sem.release()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop taking requests, let in-flight ones finish (up to ``timeout`` s), then close."""
        if self._closed:
            return
        self._draining = True
        wait = self.settings.drain_timeout_s if timeout is None else timeout
        if self._service is not None:
            await self._service.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait)
        for ctx in self._inflight.values():
            ctx.cancelled.set()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._cancel_sub is not None:
            with contextlib.suppress(Exception):
                await self._cancel_sub.unsubscribe()
        for part in (self.intake, self.batches, self.models_answer):
            if part is not None:
                await part.stop()
        if self._nc is not None and self._owns_nc and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        for backend in self.backends.values():
            await backend.close()
        self._closed = True


@contextlib.asynccontextmanager
async def running_hub(
    settings: HubSettings,
    *,
    backends: Mapping[str, Backend] | None = None,
    nc: Client | None = None,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[HubService]:
    """Start a hub in this event loop; drain it on exit. ``nc`` shares an existing connection."""
    hub = HubService(settings, backends=backends, nc=nc, telemetry=telemetry)
    try:
        await hub.start()
        yield hub
    finally:
        await hub.drain()
