"""One simulated device: the real edge agent (ASGI app, router, uplink, breaker, budget, plugins,
telemetry) with a SIMULATED model, driven in-process.

    device = await SimDevice.start(name="plant-a-000", site="plant-a", settings=s, spec=m, rng=r)
    status, headers, chunks = await device.post("/v1/chat/completions", body)
    await device.stop()

Requests go straight into the agent's ASGI app (no socket, no HTTP client), so hundreds of devices
share one event loop. The breaker is the real one, observed: every transition lands in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from edge_agent.api.app import create_app
from edge_agent.api.state import AgentState
from edge_agent.models import ModelRegistry
from edge_agent.settings import EdgeSettings, ModelSpec
from edge_agent.uplink.breaker import CircuitBreaker
from edge_agent.uplink.budget import TokenBudget
from edge_agent.uplink.client import Uplink
from openautoglm.sim.errors import SimError
from openautoglm.sim.runtime import LocalModelSpec, SimulatedRuntime, simulated_scheduler

__all__ = ["AsgiAnswer", "ObservedBreaker", "SharedPool", "SimDevice"]

BreakerListener = Callable[[str, str, str], None]
"""(device, state before, state after)."""


class ObservedBreaker(CircuitBreaker):
    """The real :class:`CircuitBreaker`, reporting each open/close to ``listener``."""

    def __init__(self, device: str, listener: BreakerListener, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._device = device
        self._listener = listener

    def _observe(self, before: str) -> None:
        after = self.state
        if after != before:
            self._listener(self._device, before, after)

    def record_failure(self) -> None:
        before = self.state
        super().record_failure()
        self._observe(before)

    def record_success(self) -> None:
        before = self.state
        super().record_success()
        self._observe(before)


class SharedPool(ThreadPoolExecutor):
    """One thread pool that many simulated devices share; only :meth:`close` stops it.

    A real device owns its pools; 200 devices in one process with 8 threads each would spend
    the simulation on thread switches. Each device's ``close()`` leaves the shared pool running.
    """

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """A device stopping: nothing to do (the run stops the pool with :meth:`close`)."""

    def close(self) -> None:
        """Stop the pool's threads."""
        super().shutdown(wait=True, cancel_futures=True)


class AsgiAnswer:
    """What the app sent back: status, headers, body chunks with their arrival times."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[tuple[float, bytes]] = []

    @property
    def body(self) -> bytes:
        return b"".join(c for _, c in self.chunks)


class SimDevice:
    """A running simulated device (see the module docstring)."""

    def __init__(self, name: str, site: str, app: Starlette, stack: AsyncExitStack) -> None:
        self.name = name
        self.site = site
        self.app = app
        self._stack = stack
        state = app.state.agent
        assert isinstance(state, AgentState)
        self.state = state

    @classmethod
    async def start(
        cls,
        *,
        name: str,
        site: str,
        settings: EdgeSettings,
        spec: LocalModelSpec,
        rng: random.Random,
        on_breaker: BreakerListener,
        pool: SharedPool | None = None,
    ) -> SimDevice:
        """Build the agent with a simulated model and run its lifespan (uplink connects)."""
        model = ModelSpec(
            id=settings.model_id, path=Path("simulated.gguf"), task="chat", n_ctx=spec.n_ctx
        )

        def loader(_spec: ModelSpec, _settings: EdgeSettings) -> SimulatedRuntime:
            return SimulatedRuntime(spec)

        registry = ModelRegistry([model], settings, loader=loader)

        def uplink(s: EdgeSettings) -> Uplink:
            hub = s.hub
            assert hub.nats_url
            breaker = ObservedBreaker(
                name,
                on_breaker,
                failure_threshold=hub.breaker_failures,
                cooldown_s=hub.breaker_cooldown_s,
            )
            servers = [u.strip() for u in hub.nats_url.split(",") if u.strip()]
            return Uplink(
                servers, device=name, breaker=breaker, budget=TokenBudget(hub.daily_token_budget)
            )

        app = create_app(
            settings, registry, scheduler_factory=simulated_scheduler(rng), uplink_factory=uplink
        )
        state = app.state.agent
        if pool is not None:
            for own in (state.workers, state.plugin_workers):
                own.shutdown(wait=False)
            state.workers = state.plugin_workers = pool
        # Each device logs to its own quiet logger, not the root: 200 root handlers would print
        # every line 200 times. The lifespan's own install_logging() is then a no-op.
        state.telemetry.install_logging(logging.getLogger(f"openautoglm.sim.device.{name}"))
        stack = AsyncExitStack()
        await stack.enter_async_context(app.router.lifespan_context(app))
        device = cls(name, site, app, stack)
        # Polled, not registry.wait() on a thread: hundreds of blocked waits would fill the
        # default executor that the loads themselves need.
        while registry.state == "loading" or not device.state.queue_depths():
            if registry.state == "failed":
                await device.stop()
                raise SimError(f"device {name}: the simulated model failed: {registry.error}")
            await asyncio.sleep(0.01)
        return device

    async def wait_connected(self, timeout: float) -> bool:
        """Whether the uplink is up within ``timeout`` s."""
        uplink = self.state.uplink
        return uplink is not None and await uplink.wait_connected(timeout)

    async def post(self, path: str, body: dict[str, Any]) -> AsgiAnswer:
        """POST ``body`` as JSON to the app in-process; returns when the response ends."""
        return await self.request("POST", path, json.dumps(body).encode(), "application/json")

    async def request(
        self, method: str, path: str, raw: bytes = b"", content_type: str = "application/json"
    ) -> AsgiAnswer:
        """Any request to the app in-process (the Batch API's uploads and polls too)."""
        answer = AsgiAnswer()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"device.sim"),
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(raw)).encode()),
                (b"authorization", b"Bearer sim"),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("device.sim", 80),
            "state": {},
        }
        sent = False
        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    answer.chunks.append((time.monotonic(), chunk))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        finally:
            finished.set()
        return answer

    async def stop(self) -> None:
        """Run the lifespan's shutdown (uplink closes, schedulers stop)."""
        with contextlib.suppress(Exception):
            await self._stack.aclose()
