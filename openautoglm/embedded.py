"""An edge agent inside this process (``Pipeline(..., mode="embedded")``): the seed's local mode.

    agent = embedded_agent()        # started once per process, on 127.0.0.1:<free port>
    agent.base_url                  # http://127.0.0.1:<port>/v1

It serves the bundled SmolLM2 with the all-in-one's aliases, but has no hub: cloud aliases are
answered locally and marked ``fallback``. uvicorn runs on a daemon thread with its own loop,
and the agent stops (gracefully) when the process exits.
"""

from __future__ import annotations

import atexit
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import uvicorn

from edge_agent.api.app import create_app
from edge_agent.api.http_protocol import bounded_http_protocol
from edge_agent.models import ModelRegistry, plan_models
from edge_agent.settings import load_settings
from openautoglm.aliases import CLOUD_MODEL, cloud_aliases, local_aliases
from shared.errors import AglError

__all__ = ["EmbeddedAgent", "embedded_agent"]

_START_TIMEOUT_S = 120.0
_lock = threading.Lock()
_running: list[EmbeddedAgent] = []


@dataclass
class EmbeddedAgent:
    """A running in-process agent."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        """Its OpenAI API base URL."""
        return f"{self.url}/v1"

    def stop(self) -> None:
        """Stop serving; in-flight requests finish first."""
        self.server.should_exit = True
        self.thread.join(30)


def embedded_agent() -> EmbeddedAgent:
    """The process's embedded agent, started on first use (the model loads in a few seconds)."""
    with _lock:
        if not _running:
            _running.append(_start())
            atexit.register(_running[0].stop)
        return _running[0]


def _start() -> EmbeddedAgent:
    base = load_settings(None, host="127.0.0.1", port=0, log_level="warning")
    router = {
        "cloud_aliases": cloud_aliases(),
        "local_aliases": local_aliases(base.model_id),
        "default_cloud_model": CLOUD_MODEL,
    }
    settings = load_settings(None, host="127.0.0.1", port=0, log_level="warning", router=router)
    registry = ModelRegistry(plan_models(settings), settings)
    app = create_app(settings, registry)
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        app,
        http=bounded_http_protocol(settings.max_header_bytes),
        log_level="warning",
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="openautoglm-embedded", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not _ready(url):
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise AglError(
                f"the embedded agent did not become ready within {_START_TIMEOUT_S:.0f} s"
                f"{': ' + registry.error if registry.error else ''}; check that the bundled "
                "model is installed (make setup) or run an agent with `open-autoglm up`"
            )
        time.sleep(0.05)
    return EmbeddedAgent(url=url, server=server, thread=thread)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
