"""Heartbeats in, registry out: the hub's subscription to ``agl.v1.dev.*.hb``.

Every hub worker subscribes in queue group ``hub``, so each heartbeat is handled once. The
device is the subject's (the server's permissions enforce it). A heartbeat that does not match
the schema is rejected and counted, a device that sends faster than its rate limit is dropped
and counted, and neither ever stops the hub. Counted in ``agl_hub_heartbeats_total{result}``:
``accepted``, ``rejected`` (bad schema), ``rate_limited``, ``unstored`` (KV failed).

When the registry cannot be opened at start (no JetStream yet, a slow or still-electing
JetStream), heartbeats are counted, not stored, and the intake keeps trying to open it in the
background (1 s, doubling to ``registry_retry_max_s``); once open, it stores them.

    intake = await HeartbeatIntake.start(nc, settings, metrics)
    intake.counts             # {'accepted': 12, 'rejected': 1, ...}
    await intake.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter as PromCounter

from cloud_hub.control.fleet import RateLimit, with_heartbeat
from cloud_hub.control.policy import ensure_config
from cloud_hub.control.registry import Registry, RegistryError
from cloud_hub.settings import HubSettings
from shared.heartbeat import decode_heartbeat
from shared.subjects import HEARTBEAT_WILDCARD, QUEUE_GROUP, ProtocolError, parse_subject
from shared.tasks import stop_tasks
from shared.telemetry import Instruments

log = logging.getLogger(__name__)

#: Seconds between two log lines about the same device's bad heartbeats.
_LOG_EVERY_S = 60.0
#: The longest wait between two tries to open a registry that could not be opened.
REGISTRY_RETRY_MAX_S = 30.0


class HeartbeatIntake:
    """Validates, rate-limits and stores heartbeats (see the module docstring)."""

    def __init__(
        self,
        registry: Registry | None,
        settings: HubSettings,
        metrics: Instruments,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._limit = RateLimit(
            burst=settings.heartbeat_burst, every_s=settings.heartbeat_min_interval_s
        )
        self._clock = clock
        self.counts: Counter[str] = Counter()
        self._prom = PromCounter(
            "agl_hub_heartbeats",
            "Device heartbeats by result: accepted, rejected (bad schema), rate_limited, unstored",
            ["result"],
            registry=metrics.registry,
        )
        self._logged: dict[str, float] = {}
        self._sub: Subscription | None = None
        self._opener: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        nc: Client,
        settings: HubSettings,
        metrics: Instruments,
        *,
        registry_retry_max_s: float = REGISTRY_RETRY_MAX_S,
    ) -> HeartbeatIntake:
        """Open the registry and the desired-state bucket, then subscribe. When they cannot be
        opened yet, subscribe anyway (count only) and keep trying in the background."""
        intake = cls(None, settings, metrics)
        try:
            await intake._open(nc)
        except RegistryError as exc:
            log.warning(
                "device registry not open: %s; heartbeats are counted, not stored, until it "
                "opens (trying again in the background)",
                exc,
            )
            intake._opener = asyncio.create_task(
                intake._keep_opening(nc, registry_retry_max_s), name="registry-opener"
            )
        intake._sub = await nc.subscribe(HEARTBEAT_WILDCARD, queue=QUEUE_GROUP, cb=intake.handle)
        return intake

    async def _open(self, nc: Client) -> None:
        registry = await Registry.open(nc)
        await ensure_config(nc)  # logs, never raises
        self.registry = registry

    async def _keep_opening(self, nc: Client, max_wait_s: float) -> None:
        wait_s = min(1.0, max_wait_s)
        while self.registry is None:
            await asyncio.sleep(wait_s)
            try:
                await self._open(nc)
            except RegistryError as exc:
                log.debug("device registry still not open: %s", exc)
                wait_s = min(wait_s * 2, max_wait_s)
        log.info("device registry open; heartbeats are stored from now on")

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        self._prom.labels(result).inc()

    def _say(self, device: str, text: str, *args: object) -> None:
        now = self._clock()
        if now - self._logged.get(device, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._logged[device] = now
            if len(self._logged) > 10_000:
                self._logged.clear()
            log.warning(text, *args)

    async def handle(self, msg: Msg) -> None:
        """One heartbeat message (never raises)."""
        parsed = parse_subject(msg.subject)
        if parsed is None or parsed.verb != "hb" or parsed.arg:
            self._count("rejected")
            return
        device, now = parsed.device, self._clock()
        if not self._limit.allow(device, now=now):
            self._count("rate_limited")
            self._say(device, "device %s sends heartbeats too fast; dropping some", device)
            return
        try:
            beat = decode_heartbeat(msg.data)
        except ProtocolError as exc:
            self._count("rejected")
            self._say(device, "rejected a heartbeat from %s: %s", device, exc)
            return
        if self.registry is not None:
            try:
                entry = await self.registry.get(device)
                await self.registry.put(with_heartbeat(entry, device, beat, now=now))
            except Exception as exc:  # KV down or full: keep serving
                self._count("unstored")
                self._say(device, "heartbeat of %s not stored: %s", device, exc)
                return
        self._count("accepted")

    async def stop(self) -> None:
        """Unsubscribe (and stop trying to open the registry)."""
        if self._opener is not None:
            await stop_tasks([self._opener])
            self._opener = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
