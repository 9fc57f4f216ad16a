"""The hub process: ``await serve(settings)`` runs a hub until SIGTERM/SIGINT, then drains.

It owns what belongs to the process, not to one :class:`~cloud_hub.serving.service.HubService`:
signal handlers, telemetry (OTLP export; JSON, OTLP or Loki logs) and the Prometheus
``/metrics`` server on ``settings.metrics_port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from cloud_hub import __version__
from cloud_hub.errors import HubError
from cloud_hub.serving.service import SERVICE_NAME, running_hub
from cloud_hub.settings import HubSettings
from shared.telemetry import Telemetry, setup_telemetry

log = logging.getLogger(__name__)


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
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
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
