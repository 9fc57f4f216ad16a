"""The Starlette application: routes, error mapping, lifespan (background model loading)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent import __version__
from edge_agent.api.dispatch import chat_completions, completions
from edge_agent.api.http_io import error_response, json_response
from edge_agent.api.inference import classify, embeddings
from edge_agent.api.tracing import TracingMiddleware
from edge_agent.errors import ApiError, NotReadyError
from edge_agent.metrics import AgentMetrics
from edge_agent.models import ModelRegistry
from edge_agent.router.cascade import Verdict
from edge_agent.router.decide import RouteDecision
from edge_agent.scheduler import Scheduler, SerialScheduler
from edge_agent.settings import EdgeSettings
from edge_agent.uplink.breaker import CircuitBreaker
from edge_agent.uplink.budget import TokenBudget
from edge_agent.uplink.client import Uplink
from edge_agent.uplink.errors import UplinkError
from shared.errors import AglError, ContextOverflowError, InvalidInput, UnsupportedOperation
from shared.plugins import PluginWatcher
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd
from shared.telemetry import CIRCUIT_STATES, setup_telemetry

log = logging.getLogger("edge_agent.api")

SchedulerFactory = Callable[[GgufRuntime, EdgeSettings], Scheduler]


def serial_scheduler(runtime: GgufRuntime, settings: EdgeSettings) -> Scheduler:
    """The default scheduler: one sequence at a time on a worker thread."""
    return SerialScheduler(
        lambda prompt, params, cancelled: runtime.generate(prompt, params, cancelled=cancelled),
        max_queue=settings.max_queue,
    )


def default_uplink(settings: EdgeSettings) -> Uplink:
    """The NATS uplink built from ``settings.hub``."""
    hub = settings.hub
    assert hub.nats_url
    return Uplink(
        [u.strip() for u in hub.nats_url.split(",") if u.strip()],
        device=settings.device_id,
        breaker=CircuitBreaker(
            failure_threshold=hub.breaker_failures, cooldown_s=hub.breaker_cooldown_s
        ),
        budget=TokenBudget(hub.daily_token_budget),
    )


class AgentState:
    """Everything the request handlers share (no module-level globals)."""

    def __init__(
        self, settings: EdgeSettings, registry: ModelRegistry, scheduler_factory: SchedulerFactory
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.telemetry = setup_telemetry(
            settings.telemetry,
            service_name="edge-agent",
            service_version=__version__,
            device_id=settings.device_id,
            component="edge",
        )
        self.metrics = AgentMetrics(telemetry=self.telemetry)
        self.metrics.genai.watch_gauge(
            otel_name="agl.circuit.state",
            prom_name="agl_circuit_state",
            description="Circuit to the hub: 0 closed, 1 half-open, 2 open",
            label="peer",
            read=self._circuit_state,
        )
        self.metrics.genai.watch_gauge(
            otel_name="agl.queue.depth",
            prom_name=None,  # agl_queue_depth already exists (refresh_gauges)
            description="Generations waiting or running, per local model",
            label="model",
            read=lambda: {m: float(s.queue_depth) for m, s in self._schedulers.items()},
        )
        self._scheduler_factory = scheduler_factory
        self._schedulers: dict[str, Scheduler] = {}
        self.started = time.time()
        self.uplink: Uplink | None = None
        self.plugins: PluginWatcher | None = None

    def _circuit_state(self) -> dict[str, float]:
        if self.uplink is None:
            return {}
        return {"hub": float(CIRCUIT_STATES[self.uplink.breaker.state])}

    def start_schedulers(self) -> None:
        """Give every loaded GGUF model its own scheduler."""
        for model in self.registry.models.values():
            if isinstance(model.runtime, GgufRuntime):
                self._schedulers[model.id] = self._scheduler_factory(model.runtime, self.settings)

    def scheduler_for(self, model_id: str) -> Scheduler:
        """The scheduler of a loaded GGUF model."""
        scheduler = self._schedulers.get(model_id)
        if scheduler is None:
            raise NotReadyError(f"model {model_id!r} is still starting; retry shortly")
        return scheduler

    def close(self) -> None:
        """Stop schedulers, then free the models."""
        for scheduler in self._schedulers.values():
            scheduler.close()
        self._schedulers.clear()
        self.registry.close()

    def route_headers(self, tier: str, reason: str) -> dict[str, str]:
        """Where the answer was made and why."""
        return {"x-agl-tier": str(tier), "x-agl-reason": str(reason)}

    def record_decision(self, decision: RouteDecision) -> None:
        """Count a routing decision (escalations by reason)."""
        self.metrics.decisions.labels(str(decision.tier), str(decision.reason)).inc()

    def record_confidence(self, verdict: Verdict) -> None:
        """Keep the cascade's score distribution."""
        self.metrics.cascade_score.observe(verdict.score)

    def note_cloud_failure(self, exc: UplinkError) -> None:
        """Log and count a hub failure that the agent answered locally instead."""
        kind = getattr(exc, "reason", None) or getattr(exc, "code", "failed")
        self.metrics.cloud_failures.labels(str(kind)).inc()
        log.warning("hub could not answer (%s); answering locally", exc)

    def count_tokens(self, model_id: str, end: GenerationEnd) -> None:
        """Record usage of a finished generation."""
        self.metrics.tokens.labels(model_id, "prompt").inc(end.prompt_tokens)
        self.metrics.tokens.labels(model_id, "completion").inc(end.completion_tokens)

    def refresh_gauges(self) -> None:
        """Update gauges right before a scrape."""
        for model_id, scheduler in self._schedulers.items():
            self.metrics.queue_depth.labels(model_id).set(scheduler.queue_depth)
        self.metrics.model_ready.set(1 if self.registry.state == "ready" else 0)


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: 503 until every model is loaded (and after a failed load)."""
    state: AgentState = request.app.state.agent
    registry = state.registry
    body: dict[str, Any] = {"status": registry.state, "models": sorted(registry.models)}
    if registry.error:
        body["error"] = registry.error
    if registry.state == "ready":
        return json_response(body)
    return json_response(body, status=503, headers={"Retry-After": "1"})


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    state: AgentState = request.app.state.agent
    state.refresh_gauges()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _model_card(state: AgentState, model_id: str) -> dict[str, Any]:
    model = state.registry.models[model_id]
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": "open-autoglm",
        "task": model.spec.task,
        "ready": model.runtime is not None,
    }


async def list_models(request: Request) -> Response:
    """``GET /v1/models``."""
    state: AgentState = request.app.state.agent
    return json_response(
        {"object": "list", "data": [_model_card(state, m) for m in state.registry.models]}
    )


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{model}``."""
    state: AgentState = request.app.state.agent
    model_id = request.path_params["model"]
    if model_id not in state.registry.models:
        state.registry.get(model_id)  # raises the 404 with the list of models
    return json_response(_model_card(state, model_id))


def _shared_error(exc: AglError) -> ApiError:
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, InvalidInput):
        return ApiError(400, str(exc), code="invalid_input")
    if isinstance(exc, UnsupportedOperation):
        return ApiError(400, str(exc), code="unsupported")
    return ApiError(500, str(exc), type="server_error", code="internal_error")


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.code == "queue_full":
        request.app.state.agent.metrics.rejected.labels("all").inc()
    return error_response(exc)


async def _on_agl_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AglError)
    return error_response(_shared_error(exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    hint = {
        404: f"no route {request.url.path}; see /v1/models, /v1/chat/completions, /v1/completions, "
        "/v1/embeddings, /v1/classify",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    message = hint.get(exc.status_code, str(exc.detail))
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return error_response(ApiError(exc.status_code, message, code=code))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return error_response(
        ApiError(
            500, "internal error; see the agent's log", type="server_error", code="internal_error"
        )
    )


class EdgeHeadersMiddleware:
    """Adds ``x-agl-tier``/``x-agl-reason`` to answers that lack them and counts requests."""

    _ROUTES = frozenset(
        {
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/classify",
            "/v1/models",
            "/healthz",
            "/readyz",
            "/metrics",
        }
    )

    def __init__(self, app: ASGIApp, *, metrics: AgentMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = (
            path
            if path in self._ROUTES
            else ("/v1/models/{model}" if path.startswith("/v1/models/") else "other")
        )
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-agl-tier" not in names:
                    headers.append((b"x-agl-tier", b"edge"))
                if b"x-agl-reason" not in names:
                    headers.append((b"x-agl-reason", b"default"))
                message["headers"] = headers
                found = dict(headers)
                self.metrics.requests.labels(
                    route,
                    str(message["status"]),
                    found[b"x-agl-tier"].decode(),
                    found[b"x-agl-reason"].decode(),
                ).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)


def create_app(
    settings: EdgeSettings,
    registry: ModelRegistry,
    *,
    scheduler_factory: SchedulerFactory = serial_scheduler,
    uplink_factory: Callable[[EdgeSettings], Uplink] | None = None,
) -> Starlette:
    """Build the ASGI app; models load in the background once it starts."""
    state = AgentState(settings, registry, scheduler_factory)
    uplink_factory = uplink_factory or default_uplink

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.telemetry.install_logging()

        async def load() -> None:
            await asyncio.to_thread(registry.load_all)
            if registry.state == "ready":
                state.start_schedulers()

        loader = asyncio.create_task(load())
        if settings.hub.nats_url:
            state.uplink = uplink_factory(settings)
            await state.uplink.connect()
        if settings.plugins_dir is not None:
            watcher = PluginWatcher(settings.plugins_dir)
            await asyncio.to_thread(watcher.start)  # a bad plugin directory stops the start
            state.plugins = watcher
        try:
            yield
        finally:
            if state.plugins is not None:
                state.plugins.stop()
            if not loader.done():
                await asyncio.wait({loader})
            if state.uplink is not None:
                await state.uplink.close()
            await asyncio.to_thread(state.close)
            # Flushing waits for the collector at most export_timeout_s per signal.
            await asyncio.to_thread(state.telemetry.shutdown)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/classify", classify, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={
            ApiError: _on_api_error,
            AglError: _on_agl_error,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.agent = state
    app.add_middleware(EdgeHeadersMiddleware, metrics=state.metrics)
    app.add_middleware(TracingMiddleware, instruments=state.metrics.genai)
    return app
