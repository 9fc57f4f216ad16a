"""The composition root: builds the agent's state, routes, middleware and lifespan.

    app = create_app(settings, registry)      # models load in the background once it starts

Handlers live in their own modules (``openai_routes``, ``inference``, ``ops``) and reach the
shared state through ``edge_agent.api.state.agent_state``; nothing imports this module back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from edge_agent import __version__
from edge_agent.api.api_keys import ApiKeyMiddleware
from edge_agent.api.batch_runtime import BatchRuntime, start_batches
from edge_agent.api.batches_routes import BATCH_ROUTES
from edge_agent.api.errors import EXCEPTION_HANDLERS
from edge_agent.api.files_routes import FILE_ROUTES
from edge_agent.api.middleware import EdgeHeadersMiddleware
from edge_agent.api.openai_routes import OPENAI_ROUTES
from edge_agent.api.ops import OPS_ROUTES
from edge_agent.api.pipelines_routes import PIPELINE_ROUTES
from edge_agent.api.state import AgentState, SchedulerFactory
from edge_agent.api.status import log_plugins
from edge_agent.api.tracing import TracingMiddleware
from edge_agent.control.heartbeat import Heartbeats
from edge_agent.control.watcher import desired_watcher
from edge_agent.errors import ApiError
from edge_agent.models import ModelRegistry
from edge_agent.scheduler import Scheduler, SerialScheduler, batched_scheduler
from edge_agent.settings import EdgeSettings
from edge_agent.uplink.breaker import CircuitBreaker
from edge_agent.uplink.budget import TokenBudget
from edge_agent.uplink.client import Uplink
from shared.plugins import PluginWatcher
from shared.runtimes.gguf import GgufRuntime
from shared.telemetry import setup_telemetry

log = logging.getLogger("edge_agent")

__all__ = [
    "AgentState",
    "SchedulerFactory",
    "batched_scheduler",
    "create_app",
    "default_uplink",
    "serial_scheduler",
]


def serial_scheduler(runtime: GgufRuntime, settings: EdgeSettings) -> Scheduler:
    """One sequence at a time on a worker thread (``batched_scheduler`` is the default)."""
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
        credentials=hub.credentials,
        tls_ca=hub.tls_ca,
        tls_cert=hub.tls_cert,
        tls_key=hub.tls_key,
    )


def create_app(
    settings: EdgeSettings,
    registry: ModelRegistry,
    *,
    scheduler_factory: SchedulerFactory = batched_scheduler,
    uplink_factory: Callable[[EdgeSettings], Uplink] | None = None,
) -> Starlette:
    """Build the ASGI app; models load in the background once it starts."""
    telemetry = setup_telemetry(
        settings.telemetry,
        service_name="edge-agent",
        service_version=__version__,
        device_id=settings.device_id,
        component="edge",
    )
    state = AgentState(settings, registry, scheduler_factory, telemetry=telemetry)
    make_uplink = uplink_factory or default_uplink

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        telemetry.install_logging()

        async def load() -> None:
            await asyncio.to_thread(registry.load_all)
            if registry.state == "ready":
                state.start_schedulers()

        loader = asyncio.create_task(load())
        heartbeats = desired = None
        if settings.hub.nats_url:
            state.uplink = make_uplink(settings)
            await state.uplink.connect()
            heartbeats = Heartbeats(state, state.uplink, interval_s=settings.hub.heartbeat_s)
            heartbeats.start()
            if settings.desired.enabled:
                desired = heartbeats.desired = desired_watcher(state)
                desired.start()
        batches: BatchRuntime | None = None
        try:  # the Batch API answers 503 (and says why) when the site's leaf is unreachable
            batches = app.state.batches = await start_batches(state)
        except ApiError as exc:
            log.error("batch API off: %s", exc.message)
        if settings.plugins_dir is not None:
            watcher = PluginWatcher(settings.plugins_dir)
            await asyncio.to_thread(watcher.start)  # a bad plugin directory stops the start
            state.plugins = watcher
            log_plugins(watcher)
        grpc_server = None
        if settings.grpc_port is not None:
            from edge_agent.grpc import start_grpc_server  # grpcio loads only when it is on

            grpc_server = await start_grpc_server(state)
            state.grpc_port = grpc_server.port
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            if state.plugins is not None:
                state.plugins.stop()
            if batches is not None:
                await batches.close()
            if not loader.done():
                await asyncio.wait({loader})
            if desired is not None:
                await desired.stop()
            if heartbeats is not None:
                await heartbeats.stop()
            if state.uplink is not None:
                await state.uplink.close()
            await asyncio.to_thread(state.close)
            # Flushing waits for the collector at most export_timeout_s per signal.
            await asyncio.to_thread(telemetry.shutdown)

    app = Starlette(
        routes=[*OPENAI_ROUTES, *OPS_ROUTES, *PIPELINE_ROUTES, *FILE_ROUTES, *BATCH_ROUTES],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    app.state.agent = state
    app.add_middleware(ApiKeyMiddleware, keys=[k.get_secret_value() for k in settings.api_keys])
    app.add_middleware(EdgeHeadersMiddleware, metrics=state.metrics)
    app.add_middleware(TracingMiddleware, instruments=state.metrics.genai)
    return app
