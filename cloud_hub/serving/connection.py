"""The hub's own NATS connection: reconnects forever, logs what the link does.

While NATS cannot be reached the hub keeps trying (a NATS restart must not need a hub
restart), but says so at WARNING once, then at most every ``REMINDER_S`` seconds, so an
operator sees why the hub is not serving without a log line every 2 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import nats
from nats.aio.client import Client

from cloud_hub.errors import HubError
from cloud_hub.settings import HubSettings
from shared.errors import AglError
from shared.nats_auth import connect_options

log = logging.getLogger(__name__)

#: Seconds between two "still cannot reach NATS" reminders.
REMINDER_S = 30.0
RECONNECT_WAIT_S = 2.0


class LinkLog:
    """Rate-limited link messages: the first failure at once, then one reminder per period.

    ``clock`` is injectable so tests need not wait for the period.
    """

    def __init__(
        self, url: str, *, period_s: float = REMINDER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url
        self.period_s = period_s
        self._clock = clock
        self._failures = 0
        self._last: float | None = None
        self.connected = False

    async def error(self, exc: Exception) -> None:
        """A connection attempt (or the live connection) failed."""
        self._failures += 1
        now = self._clock()
        if self._last is None or now - self._last >= self.period_s:
            self._last = now
            first = self._failures == 1
            log.warning(
                "%s NATS at %s (%s); retrying every %g s. SIGTERM or Ctrl-C stops the hub",
                "cannot reach" if first else f"still cannot reach (attempt {self._failures})",
                self.url,
                str(exc) or type(exc).__name__,
                RECONNECT_WAIT_S,
            )

    async def disconnected(self) -> None:
        """The connection was lost (or closed)."""
        if self.connected:
            log.warning("NATS connection to %s lost; reconnecting", self.url)
        self.connected = False

    async def reconnected(self) -> None:
        """The connection is back after a loss."""
        self.connected = True
        self._failures, self._last = 0, None
        log.info("NATS connection to %s restored", self.url)


async def connect(settings: HubSettings, *, name: str) -> Client:
    """Connect to ``settings.servers``, retrying forever; cancel the call to give up.

    :class:`HubError` when nats-py gives up on its own (a configuration error such as an
    invalid URL).
    """
    shown = settings.shown_nats_url
    link = LinkLog(shown)
    try:
        auth = connect_options(
            credentials=settings.credentials,
            tls_ca=settings.tls_ca,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
        )
    except AglError as exc:
        raise HubError(str(exc)) from None
    if settings.credentials is None:
        log.warning(
            "connecting to NATS without credentials (dev mode); set credentials to the hub.creds "
            "from `hubctl auth init` for per-device identity"
        )
    log.info("connecting to NATS at %s", shown)
    try:
        nc = await nats.connect(
            settings.servers,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=link.error,
            disconnected_cb=link.disconnected,
            reconnected_cb=link.reconnected,
            **auth,
        )
    except Exception as exc:  # nats raises OSError, NoServersError, TimeoutError …
        raise HubError(
            f"cannot reach NATS at {shown} ({exc}); "
            "check --nats-url and that nats-server is running"
        ) from exc
    link.connected = True
    url = nc.connected_url
    log.info("connected to NATS at %s", f"{url.hostname}:{url.port}" if url else shown)
    return nc
