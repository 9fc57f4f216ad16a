"""What the request handlers share: :class:`AgentState`, and the typed accessor to it.

    state = agent_state(request)      # in a handler
    scheduler = state.scheduler_for("smollm2-135m-instruct")

The composition root (``edge_agent.api.app``) builds the state and its telemetry; no handler
module imports the app back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request

from edge_agent.errors import NotReadyError
from edge_agent.metrics import AgentMetrics
from edge_agent.models import ModelRegistry
from edge_agent.router.decide import RouteDecision
from edge_agent.router.online_tuning import ThresholdTuner
from edge_agent.scheduler import Scheduler
from edge_agent.settings import EdgeSettings
from edge_agent.uplink.client import Uplink
from edge_agent.uplink.errors import UplinkError
from shared.plugins import PluginWatcher
from shared.runtimes.gguf import GgufRuntime
from shared.telemetry import CIRCUIT_STATES, Telemetry
from shared.telemetry.batching import BatchObserver

log = logging.getLogger("edge_agent.api")

__all__ = ["AgentState", "SchedulerFactory", "agent_state"]

SchedulerFactory = Callable[[GgufRuntime, EdgeSettings], Scheduler]

#: Threads that run blocking request work off the event loop, one pool for chat templates and
#: tokenising and one for plugin calls, so slow plugins cannot hold up other requests' prompts.
#: Bounded: a flood of slow work queues here instead of starving the loop.
_WORKERS = 4


class AgentState:
    """Everything the request handlers share (no module-level globals)."""

    def __init__(
        self,
        settings: EdgeSettings,
        registry: ModelRegistry,
        scheduler_factory: SchedulerFactory,
        *,
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.telemetry = telemetry
        self.metrics = AgentMetrics(telemetry=telemetry)
        self.metrics.genai.watch_gauge(
            otel_name="agl.circuit.state",
            prom_name="agl_circuit_state",
            description="Circuit to the hub: 0 closed, 1 half-open, 2 open",
            label="peer",
            read=self._circuit_state,
        )
        self._scheduler_factory = scheduler_factory
        self._schedulers: dict[str, Scheduler] = {}
        self._retiring: dict[GgufRuntime, Scheduler] = {}
        self.started = time.time()
        self.uplink: Uplink | None = None
        self.plugins: PluginWatcher | None = None
        cascade = settings.router.cascade
        self.cascade_tuner: ThresholdTuner | None = (
            ThresholdTuner.from_config(cascade) if cascade.target_escalation_share else None
        )
        """Online tuning of the cascade threshold (``cascade.target_escalation_share``)."""
        self.grpc_port: int | None = None
        """The bound gRPC port while the gRPC API serves (``grpc_port`` set), else None."""
        self.workers = ThreadPoolExecutor(_WORKERS, thread_name_prefix="agl-prompt")
        self.plugin_workers = ThreadPoolExecutor(_WORKERS, thread_name_prefix="agl-plugin")

    def _circuit_state(self) -> dict[str, float]:
        if self.uplink is None:
            return {}
        # Open while the link is down: nothing reaches the hub, whatever the breaker counted.
        return {"hub": float(CIRCUIT_STATES[self.uplink.circuit_state])}

    def start_schedulers(self) -> None:
        """Give every loaded GGUF model its own scheduler."""
        for model in self.registry.models.values():
            if isinstance(model.runtime, GgufRuntime):
                self._schedulers[model.id] = self._new_scheduler(model.id, model.runtime)

    def _new_scheduler(self, model_id: str, runtime: GgufRuntime) -> Scheduler:
        scheduler = self._scheduler_factory(runtime, self.settings)
        observe = getattr(scheduler, "observe", None)  # a batched one reports agl.batch.*
        if observe is not None:
            observe(BatchObserver(self.metrics.genai, model_id))
        return scheduler

    def scheduler_for(self, model_id: str, *, runtime: GgufRuntime | None = None) -> Scheduler:
        """The scheduler of a loaded GGUF model (of ``runtime``'s, while a swap retires it)."""
        if runtime is not None and runtime in self._retiring:
            return self._retiring[runtime]
        scheduler = self._schedulers.get(model_id)
        if scheduler is None:
            raise NotReadyError(f"model {model_id!r} is still starting; retry shortly")
        return scheduler

    def swap_scheduler(self, model_id: str, old: GgufRuntime, new: GgufRuntime) -> Scheduler:
        """Give ``new`` a scheduler for ``model_id``; the old one retires (returned) and keeps
        serving the requests whose prompts ``old`` prepared until :meth:`retired` drops it."""
        scheduler = self._new_scheduler(model_id, new)
        retiring = self._schedulers[model_id]
        self._retiring[old] = retiring
        self._schedulers[model_id] = scheduler
        return retiring

    def retired(self, old: GgufRuntime) -> None:
        """Forget a retired runtime's scheduler (after its last request)."""
        self._retiring.pop(old, None)

    def scheduler_slots(self, model_id: str) -> int:
        """Sequences a model's scheduler decodes together (1 for a serial one)."""
        return int(getattr(self._schedulers.get(model_id), "slots", 1))

    def queue_depths(self) -> dict[str, int]:
        """Generations waiting or running, per GGUF model that has a scheduler."""
        return {model_id: s.queue_depth for model_id, s in self._schedulers.items()}

    def close(self) -> None:
        """Stop schedulers and worker threads, then free the models."""
        for scheduler in [*self._schedulers.values(), *self._retiring.values()]:
            scheduler.close()
        for old in self._retiring:  # a model swapped out whose retirement had not finished
            old.close()
        self._schedulers.clear()
        self._retiring.clear()
        self.workers.shutdown(wait=True, cancel_futures=True)
        self.plugin_workers.shutdown(wait=True, cancel_futures=True)
        self.registry.close()

    def record_decision(self, decision: RouteDecision) -> None:
        """Count the final routing decision of one request (once per request)."""
        self.metrics.decisions.labels(str(decision.tier), str(decision.reason)).inc()

    def note_cloud_failure(self, exc: UplinkError) -> None:
        """Log and count a hub failure that the agent answered locally instead."""
        kind = getattr(exc, "reason", None) or getattr(exc, "code", "failed")
        self.metrics.cloud_failures.labels(str(kind)).inc()
        log.warning("hub could not answer (%s); answering locally", exc)

    def refresh_gauges(self) -> None:
        """Update gauges right before a scrape."""
        for model_id, scheduler in self._schedulers.items():
            self.metrics.queue_depth.labels(model_id).set(scheduler.queue_depth)
        self.metrics.model_ready.set(1 if self.registry.state == "ready" else 0)


def agent_state(request: Request) -> AgentState:
    """The agent's shared state, typed (set by ``create_app``)."""
    state = request.app.state.agent
    assert isinstance(state, AgentState)
    return state
