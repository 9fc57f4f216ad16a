"""Runs a real edge agent (uvicorn + the bundled llama.cpp model) on a free port in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from edge_agent.api.app import create_app, serial_scheduler
from edge_agent.api.http_protocol import bounded_http_protocol
from edge_agent.api.state import AgentState, SchedulerFactory
from edge_agent.models import ModelRegistry, load_runtime, plan_models
from edge_agent.settings import EdgeSettings, load_settings


@dataclass
class RunningAgent:
    """A live agent: its base URL and its in-process state (for white-box assertions)."""

    url: str
    state: AgentState

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


@contextmanager
def run_agent(
    settings: EdgeSettings | None = None,
    *,
    loader: Any = load_runtime,
    scheduler_factory: SchedulerFactory = serial_scheduler,
    wait_ready: bool = True,
    **overrides: Any,
) -> Iterator[RunningAgent]:
    """Start an agent on 127.0.0.1:<free port>; stop it (gracefully) on exit."""
    settings = settings or load_settings(None, n_ctx=512, n_threads=2, **overrides)
    registry = ModelRegistry(plan_models(settings), settings, loader=loader)
    app = create_app(settings, registry, scheduler_factory=scheduler_factory)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http=bounded_http_protocol(settings.max_header_bytes),
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the agent did not start")
            time.sleep(0.02)
        if wait_ready:
            while httpx.get(f"{url}/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent did not become ready")
                time.sleep(0.05)
        yield RunningAgent(url=url, state=app.state.agent)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
