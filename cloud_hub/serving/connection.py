"""The hub's own NATS connection: reconnects forever, logs what the link does."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client

from cloud_hub.errors import HubError
from cloud_hub.settings import HubSettings

log = logging.getLogger(__name__)


async def connect(settings: HubSettings, *, name: str) -> Client:
    """Connect to ``settings.servers``, reconnecting forever; :class:`HubError` if unreachable."""
    try:
        return await nats.connect(
            settings.servers,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=2,
            error_cb=_log_nats_error,
            disconnected_cb=_log_disconnect,
            reconnected_cb=_log_reconnect,
        )
    except Exception as exc:  # nats raises OSError, NoServersError, TimeoutError …
        raise HubError(
            f"cannot reach NATS at {settings.nats_url} ({exc}); "
            "check --nats-url and that nats-server is running"
        ) from exc


async def _log_nats_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc or type(exc).__name__)


async def _log_disconnect() -> None:
    log.info("NATS connection closed or lost (reconnecting unless draining)")


async def _log_reconnect() -> None:
    log.info("NATS connection restored")
