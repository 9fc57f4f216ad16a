"""The hub process: ``await serve(settings)`` runs a hub until SIGTERM/SIGINT, then drains.

It owns what belongs to the process, not to one :class:`~cloud_hub.serving.service.HubService`:
signal handlers, the NATS connection, telemetry (OTLP export; JSON, OTLP or Loki logs) and the
Prometheus ``/metrics`` server on ``settings.metrics_host:metrics_port``.

SIGTERM and SIGINT stop the hub in every state: while it waits for a NATS that cannot be reached,
while its models load, and while it serves (then in-flight requests get ``drain_timeout_s``).
It returns normally (exit code 0). Should stopping itself hang, a watchdog ends the process with
exit code 3 ``drain_timeout_s`` + 10 s after the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from nats.aio.client import Client
from prometheus_client import CollectorRegistry, start_http_server

from cloud_hub import __version__
from cloud_hub.errors import HubError
from cloud_hub.serving.connection import connect
from cloud_hub.serving.service import SERVICE_NAME, HubService
from cloud_hub.settings import HubSettings
from shared.tasks import cancel_and_wait
from shared.telemetry import Telemetry, setup_telemetry

log = logging.getLogger(__name__)

#: Seconds past ``drain_timeout_s`` that closing the connection and back-ends may take.
_GRACE_S = 5.0
T = TypeVar("T")


async def serve(settings: HubSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run a hub until SIGTERM/SIGINT (or ``stop`` is set), then drain gracefully.

    This owns the process's telemetry: OTLP export and JSON/OTLP/Loki logs per
    ``settings.telemetry``, and Prometheus ``/metrics`` on ``settings.metrics_port`` (if set).
    """
    telemetry = setup_telemetry(
        settings.telemetry,
        service_name=SERVICE_NAME,
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
    # Signals are live before anything can block (model loading, a NATS that cannot be
    # reached), so SIGTERM stops the hub in every state, as Kubernetes expects.
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, sig, stop, settings.drain_timeout_s)
            installed.append(sig)
    metrics_server: Any = None
    try:
        nc = await _unless_stopped(connect(settings, name=SERVICE_NAME), stop)
        if nc is None:
            log.warning(
                "stopped before NATS at %s was reached; nothing was served",
                settings.shown_nats_url,
            )
            return
        hub = HubService(settings, nc=nc, telemetry=telemetry)
        try:
            if await _unless_stopped(_started(hub), stop) is None:
                log.warning("stopped while the hub was starting; nothing was served")
                return
            if settings.metrics_port:
                metrics_server = _serve_metrics(settings, hub.metrics.registry)
            await stop.wait()
            log.info("draining (up to %g s)", settings.drain_timeout_s)
        finally:
            await _bounded(hub.drain(), settings.drain_timeout_s + _GRACE_S, "draining")
            await _close(nc)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.shutdown()
        log.info("hub stopped")


async def _started(hub: HubService) -> HubService:
    await hub.start()
    return hub


def _on_signal(sig: signal.Signals, stop: asyncio.Event, drain_timeout_s: float) -> None:
    if stop.is_set():
        log.warning("%s again: already stopping", sig.name)
        return
    log.info("%s received: stopping (in-flight requests get %g s)", sig.name, drain_timeout_s)
    stop.set()
    # The last resort when something does not yield (a back-end stuck in C code): the
    # process still ends, so a supervisor never waits for SIGKILL.
    watchdog = threading.Timer(drain_timeout_s + 2 * _GRACE_S, _exit_now, args=(sig,))
    watchdog.daemon = True
    watchdog.start()


def _exit_now(sig: signal.Signals) -> None:
    sys.stderr.write(f"hubctl: still running long after {sig.name}; exiting with code 3\n")
    sys.stderr.flush()
    os._exit(3)


async def _unless_stopped(step: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await ``step``, or cancel it and return None when ``stop`` is set first."""
    task = asyncio.ensure_future(step)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()  # a HubError (bad model, bad URL) ends the process with its message
    await cancel_and_wait(task)
    return None


async def _bounded(step: Awaitable[None], timeout_s: float, what: str) -> None:
    # With NATS gone, unsubscribing and flushing could wait for a reconnect that never comes.
    try:
        async with asyncio.timeout(timeout_s):
            await step
    except TimeoutError:
        log.warning("%s did not finish within %g s; going on", what, timeout_s)


async def _close(nc: Client) -> None:
    if nc.is_closed:
        return
    if nc.is_connected:
        with contextlib.suppress(Exception):
            await _bounded(nc.drain(), _GRACE_S, "draining the NATS connection")
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await _bounded(nc.close(), _GRACE_S, "closing the NATS connection")


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
