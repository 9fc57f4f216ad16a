"""The hub's NATS inference service (``nats.micro`` service ``agl-hub``).

One endpoint per model on ``agl.v1.infer.<model>`` in queue group ``hub``, so several hub
processes share the load and ``$SRV.PING/INFO/STATS`` find them. Every bad message gets an
:class:`~shared.protocol.ErrorMessage` reply and the hub keeps serving.

Embedding the hub in another program (an all-in-one launcher, a test)::

    async with running_hub(settings) as hub:   # connects, loads models, subscribes
        ...                                    # leaving drains in-flight requests

or run it until SIGTERM/SIGINT with ``await serve(settings)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, start_http_server

from cloud_hub import __version__
from cloud_hub.backends import Backend, Finish, RequestContext, build_backend
from cloud_hub.errors import HubError
from cloud_hub.settings import HubSettings
from shared.errors import AglError, InvalidInput, UnsupportedOperation
from shared.protocol import (
    CANCEL_PREFIX,
    CANCEL_WILDCARD,
    INFER_PREFIX,
    QUEUE_GROUP,
    ChunkMessage,
    EndMessage,
    ErrorCode,
    ErrorMessage,
    InferRequest,
    ProtocolError,
    ResultMessage,
    Usage,
    decode_request,
    encode,
    infer_subject,
    model_from_subject,
)
from shared.telemetry import (
    GenAiCall,
    Instruments,
    Telemetry,
    extract_context,
    operation_for,
    setup_telemetry,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "agl-hub"


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """What the hub did with one request (kept in :attr:`HubService.finished`)."""

    id: str
    model: str
    finish_reason: str
    completion_tokens: int


async def _send(
    request: Request, msg: ResultMessage | ChunkMessage | EndMessage | ErrorMessage
) -> None:
    try:
        await request.respond(encode(msg))
    except ValueError:  # published without a reply subject: nobody to answer
        log.debug("request on %s has no reply subject; dropped %s", request.subject, msg.type)


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
        self.metrics = Instruments(self.telemetry, CollectorRegistry())
        self._running: Counter[str] = Counter()
        self.metrics.watch_gauge(
            otel_name="agl.queue.depth",
            prom_name="agl_hub_queue_depth",
            description="Requests this hub worker is serving, per model",
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
        self._inflight: dict[str, RequestContext] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
        if not self.backends:
            for spec in self.settings.models:
                self.backends[spec.name] = build_backend(
                    spec, request_timeout_s=self.settings.request_timeout_s
                )
        if not self.backends:
            raise HubError("no models configured; add a [[models]] table to the config file")
        for backend in self.backends.values():
            await backend.start()
            if getattr(backend, "is_stand_in", False):
                log.warning("model %s uses the ECHO back-end (a test stand-in)", backend.name)
        if self._nc is None:
            try:
                self._nc = await nats.connect(
                    self.settings.servers,
                    name=SERVICE_NAME,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=2,
                    error_cb=_log_nats_error,
                    disconnected_cb=_log_disconnect,
                    reconnected_cb=_log_reconnect,
                )
            except Exception as exc:  # nats raises OSError, NoServersError, TimeoutError …
                raise HubError(
                    f"cannot reach NATS at {self.settings.nats_url} ({exc}); "
                    "check --nats-url and that nats-server is running"
                ) from exc
        nc = self._nc
        self._service = await add_service(
            nc,
            name=SERVICE_NAME,
            version=__version__,
            description="Open-AutoGLM inference hub",
            queue_group=QUEUE_GROUP,
            metadata={"models": ",".join(sorted(self.backends))},
        )
        for model in self.backends:
            await self._service.add_endpoint(
                name=re.sub(r"[^A-Za-z0-9_-]", "_", model),
                subject=infer_subject(model),
                handler=self._on_request,
                metadata={"model": model},
            )
        if self.settings.answer_unknown_models:
            # Same queue group: a request for a known model may land here and is served too.
            await self._service.add_endpoint(
                name="any-model", subject=INFER_PREFIX + "*", handler=self._on_request
            )
        self._cancel_sub = await nc.subscribe(CANCEL_WILDCARD, cb=self._on_cancel)
        await nc.flush()
        log.info("hub %s serving %s", self.service_id, ", ".join(sorted(self.backends)))

    async def _on_cancel(self, msg: Msg) -> None:
        ctx = self._inflight.get(msg.subject[len(CANCEL_PREFIX) :])
        if ctx is not None:
            ctx.cancelled.set()

    async def _on_request(self, request: Request) -> None:
        # Runs in the subscription's delivery loop: answer or hand off to a task, never wait.
        model = model_from_subject(request.subject) or ""
        limit = self.settings.max_request_bytes or self.nc.max_payload
        if len(request.data) > limit:
            await self._refuse(
                request,
                None,
                "too_large",
                f"request is {len(request.data)} bytes; "
                f"this hub accepts at most {limit}; shorten the prompt",
            )
            return
        try:
            req = decode_request(request.data)
        except ProtocolError as exc:
            await self._refuse(request, None, "bad_request", str(exc))
            return
        backend = self.backends.get(model)
        if backend is None or req.model != model:
            served = ", ".join(sorted(self.backends))
            await self._refuse(
                request,
                req.id,
                "unknown_model",
                f"this hub does not serve model {req.model!r} on {request.subject}; "
                f"it serves: {served}",
            )
            return
        if req.kind not in backend.kinds:
            await self._refuse(
                request,
                req.id,
                "bad_request",
                f"model {model} serves {', '.join(sorted(backend.kinds))} requests, "
                f"not {req.kind!r}",
            )
            return
        if req.id in self._inflight:
            await self._refuse(
                request,
                req.id,
                "bad_request",
                f"request id {req.id} is already in flight; use a fresh id per request",
            )
            return
        if self._draining or self._sem.locked():
            code: ErrorCode = "shutting_down" if self._draining else "busy"
            await self._refuse(
                request,
                req.id,
                code,
                f"hub worker is {'draining' if self._draining else 'at its limit of '}"
                f"{'' if self._draining else self.settings.concurrency} requests; "
                "retry on another worker or answer locally",
            )
            return
        await self._sem.acquire()
        ctx = RequestContext(headers=dict(request.headers or {}))
        self._inflight[req.id] = ctx
        task = asyncio.create_task(self._serve(request, req, backend, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _refuse(request: Request, rid: str | None, code: ErrorCode, message: str) -> None:
        await _send(request, ErrorMessage(id=rid, code=code, message=message))

    def _start_call(self, request: Request, req: InferRequest, ctx: RequestContext) -> GenAiCall:
        # The edge's span (W3C traceparent in the NATS headers) is the parent.
        call = GenAiCall.start(
            self.metrics,
            operation_for(req.kind),
            request_model=req.model,
            tier="cloud",
            kind=SpanKind.SERVER,
            parent=extract_context(ctx.headers),
            max_tokens=req.params.max_tokens,
            temperature=req.params.temperature,
        )
        if call.span.is_recording():
            call.span.set_attributes(
                {
                    "messaging.system": "nats",
                    "messaging.destination.name": request.subject,
                    "agl.device.id": req.device,
                    "agl.request.id": req.id,
                    "agl.stream": req.stream,
                }
            )
        return call

    async def _serve(
        self, request: Request, req: InferRequest, backend: Backend, ctx: RequestContext
    ) -> None:
        call = self._start_call(request, req, ctx)
        self._running[req.model] += 1
        try:
            with call.current(), self.metrics.activate():
                await self._serve_traced(request, req, backend, ctx, call)
        finally:
            self._running[req.model] -= 1
            call.fail("internal")  # no-op unless _serve_traced ended without a verdict

    async def _serve_traced(
        self,
        request: Request,
        req: InferRequest,
        backend: Backend,
        ctx: RequestContext,
        call: GenAiCall,
    ) -> None:
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                if req.stream:
                    finish = await self._stream(request, req, backend, ctx, call)
                else:
                    finish = await self._complete(request, req, backend, ctx)
            self.finished.append(
                FinishedRequest(req.id, req.model, finish.finish_reason, finish.completion_tokens)
            )
            call.finish(
                response_model=req.model,
                input_tokens=finish.prompt_tokens,
                output_tokens=finish.completion_tokens,
                finish_reason=finish.finish_reason,
            )
        except TimeoutError:
            call.fail("timeout")
            ctx.cancelled.set()
            await self._refuse(
                request,
                req.id,
                "timeout",
                f"the hub's deadline of {self.settings.request_timeout_s:g} s passed; "
                "lower max_tokens or raise request_timeout_s",
            )
        except (InvalidInput, UnsupportedOperation) as exc:
            call.fail("bad_request", str(exc))
            await self._refuse(request, req.id, "bad_request", str(exc))
        except (AglError, HubError) as exc:
            call.fail("backend_error", str(exc))
            await self._refuse(request, req.id, "backend_error", str(exc))
        except asyncio.CancelledError:
            call.fail("shutting_down")
            ctx.cancelled.set()
            with contextlib.suppress(Exception):
                await self._refuse(request, req.id, "shutting_down", "the hub stopped mid-request")
            raise
        except Exception as exc:
            call.fail("internal", repr(exc))
            log.exception("request %s failed", req.id)
            await self._refuse(request, req.id, "internal", f"hub bug: {exc!r}; see the hub log")
        finally:
            self._inflight.pop(req.id, None)
            self._sem.release()

    async def _complete(
        self, request: Request, req: InferRequest, backend: Backend, ctx: RequestContext
    ) -> Finish:
        parts: list[str] = []
        finish = Finish("stop")
        async with contextlib.aclosing(backend.run(req, ctx)) as events:
            async for event in events:
                if isinstance(event, Finish):
                    finish = event
                else:
                    parts.append(event)
        reply = ResultMessage(
            id=req.id,
            model=req.model,
            text="".join(parts),
            finish_reason=finish.finish_reason,
            usage=Usage(
                prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens
            ),
            classifications=finish.classifications,
        )
        data = encode(reply)
        if len(data) > self.nc.max_payload:
            await self._refuse(
                request,
                req.id,
                "too_large",
                f"the answer is {len(data)} bytes, over the server's max_payload "
                f"({self.nc.max_payload}); request it with stream=true",
            )
        else:
            await request.respond(data)
        return finish

    async def _stream(
        self,
        request: Request,
        req: InferRequest,
        backend: Backend,
        ctx: RequestContext,
        call: GenAiCall | None = None,
    ) -> Finish:
        seq = 0
        finish = Finish("stop")
        async with contextlib.aclosing(backend.run(req, ctx)) as events:
            async for event in events:
                if isinstance(event, Finish):
                    finish = event
                    continue
                if seq == 0 and call is not None:
                    call.first_token()
                await _send(request, ChunkMessage(id=req.id, seq=seq, text=event))
                seq += 1
        usage = Usage(
            prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens
        )
        await _send(
            request, EndMessage(id=req.id, seq=seq, finish_reason=finish.finish_reason, usage=usage)
        )
        return finish

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
        if self._nc is not None and self._owns_nc and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        for backend in self.backends.values():
            await backend.close()
        self._closed = True


async def _log_nats_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc or type(exc).__name__)


async def _log_disconnect() -> None:
    log.info("NATS connection closed or lost (reconnecting unless draining)")


async def _log_reconnect() -> None:
    log.info("NATS connection restored")


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


async def serve(settings: HubSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run a hub until SIGTERM/SIGINT (or ``stop`` is set), then drain gracefully.

    This owns the process's telemetry: OTLP export and JSON/OTLP/Loki logs per
    ``settings.telemetry``, and Prometheus ``/metrics`` on ``settings.metrics_port`` (if set).
    """
    telemetry = setup_telemetry(
        settings.telemetry,
        service_name="agl-hub",
        service_version=__version__,
        # The hostname (a pod name under k3s): a bounded Loki label, unlike a pid.
        device_id=socket.gethostname() or "hub",
        component="hub",
    )
    telemetry.install_logging()
    try:
        await _serve_until_stopped(settings, stop or asyncio.Event(), telemetry)
    finally:
        await asyncio.to_thread(telemetry.shutdown)


async def _serve_until_stopped(
    settings: HubSettings, stop: asyncio.Event, telemetry: Telemetry
) -> None:
    loop = asyncio.get_running_loop()
    installed: list[Any] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    metrics_server: Any = None
    try:
        async with running_hub(settings, telemetry=telemetry) as hub:
            if settings.metrics_port:
                metrics_server = _serve_metrics(settings, hub.metrics.registry)
            await stop.wait()
            log.info("draining (up to %g s)", settings.drain_timeout_s)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.shutdown()


def _serve_metrics(settings: HubSettings, registry: CollectorRegistry) -> Any:
    try:
        server, _thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as exc:
        raise HubError(
            f"cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror}; pick another --metrics-port (0 turns it off)"
        ) from exc
    log.info(
        "Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port
    )
    return server
