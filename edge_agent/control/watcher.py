"""Watch this device's desired-state key in KV ``agl_config`` and converge on it (NATS I/O).

    watcher = DesiredWatcher(device="dev-1", connection=lambda: uplink.nats_client, applier=applier)
    watcher.start()
    await watcher.stop()

The key is watched with a named, filtered push consumer (``LAST_PER_SUBJECT``, no acks), the one
kind of watch a device's permissions allow. The watch is made again as soon as the uplink
reconnects, and the key is read again by direct get every ``reconcile_s`` (60 s): a watch lost in
any other way cannot leave the device on an old revision for longer than that. The latest record
wins; older ones are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from edge_agent.api.state import AgentState
from edge_agent.control.apply import Applier
from edge_agent.control.artifact_cache import ArtifactCache
from edge_agent.uplink.backoff import jittered
from shared.desired import CONFIG_BUCKET, decode_record
from shared.errors import ConfigError
from shared.tasks import stop_tasks

__all__ = ["DesiredWatcher", "desired_watcher"]

log = logging.getLogger(__name__)
#: Back-off while the watch cannot be made (the hub has not created the bucket yet …).
_FIRST_RETRY_S, _MAX_RETRY_S = 0.25, 5.0


class _LinkDown(Exception):
    """No NATS connection right now (the uplink connects in the background)."""


class DesiredWatcher:
    """Keeps the agent on the revision stored under its own key."""

    def __init__(
        self,
        *,
        device: str,
        connection: Callable[[], Client | None],
        applier: Applier,
        reconcile_s: float = 60.0,
        domain: str | None = None,
    ) -> None:
        self.device = device
        #: The hub's JetStream domain (``hub.jetstream_domain``; the agent may sit on a leaf).
        self.domain = domain
        self._connection = connection
        self.applier = applier
        self.reconcile_s = reconcile_s
        self.seen_revision: str | None = None
        self.watches = 0
        """Watches (re)created; more than one means the watch was lost and made again."""
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._latest: bytes | None = None
        self._sub_client: Client | None = None
        self._sub: object | None = None
        self._reconnects = 0

    @property
    def subject(self) -> str:
        """The KV subject of this device's key."""
        return f"$KV.{CONFIG_BUCKET}.{self.device}"

    def link_restored(self) -> None:
        """The hub link came back: watch again now (a NATS restart may have lost the watch)."""
        self._wake.set()

    def start(self) -> None:
        """Start converging in a task."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="desired-watcher")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        await self._unwatch()

    async def _on_msg(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            return
        self._latest = msg.data
        self._wake.set()

    async def _watch(self, nc: Client) -> None:
        reconnects = nc.stats["reconnects"]
        if self._sub_client is nc and self._sub is not None and self._reconnects == reconnects:
            return  # a reconnect (a NATS restart may lose the consumer) makes a new watch
        await self._unwatch()
        # A named consumer: its create subject carries the filter, the one a device may use.
        # No acks (a device may not publish them); the server drops it when it goes idle.
        self._sub = await nc.jetstream(domain=self.domain).subscribe(
            self.subject,
            stream=f"KV_{CONFIG_BUCKET}",
            cb=self._on_msg,
            manual_ack=True,
            config=ConsumerConfig(
                name=f"agl-watch-{self.device}-{uuid.uuid4().hex[:8]}",
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
                mem_storage=True,
            ),
        )
        self._sub_client, self._reconnects = nc, reconnects
        self.watches += 1

    async def _unwatch(self) -> None:
        sub, self._sub, self._sub_client = self._sub, None, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]

    async def _read_key(self, nc: Client) -> bytes | None:
        try:
            msg = await nc.jetstream(domain=self.domain).get_msg(
                f"KV_{CONFIG_BUCKET}", subject=self.subject, direct=True
            )
        except NotFoundError:
            return None
        return msg.data

    async def converge_once(self) -> None:
        """Make sure the watch is up, read the key, apply the newest record (raises if no link)."""
        nc = self._connection()
        if nc is None:
            self._sub = None  # the connection is down or replaced: watch again when it is back
            raise _LinkDown("the hub link is not up yet")
        await self._watch(nc)
        data = self._latest if self._latest is not None else await self._read_key(nc)
        self._latest = None
        if not data:
            return
        try:
            record = decode_record(data)
        except ConfigError as exc:
            self.applier.apply_error = str(exc)
            return
        self.seen_revision = record.revision
        await self.applier.apply(record, nc.jetstream(domain=self.domain))

    async def _loop(self) -> None:
        retry_s = _FIRST_RETRY_S
        while True:
            wait_s = jittered(self.reconcile_s)
            try:
                await self.converge_once()
                retry_s = _FIRST_RETRY_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no bucket yet, a broken link or server: try again soon
                wait_s, retry_s = min(retry_s, self.reconcile_s), min(retry_s * 2, _MAX_RETRY_S)
                level = logging.DEBUG if isinstance(exc, _LinkDown) else logging.INFO
                log.log(
                    level, "desired state: %s; again in %g s", exc or type(exc).__name__, wait_s
                )
                await self._unwatch()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)


def desired_watcher(state: AgentState) -> DesiredWatcher:
    """The watcher for the agent's own settings (``[desired]``) over its uplink."""
    settings = state.settings
    cfg = settings.desired
    uplink = state.uplink
    cache = ArtifactCache(
        cfg.cache_dir, max_bytes=cfg.cache_max_bytes, trusted=list(cfg.trusted_signers)
    )
    watcher = DesiredWatcher(
        device=settings.device_id,
        connection=lambda: uplink.nats_client if uplink is not None else None,
        applier=Applier(state, cache=cache, base=settings),
        reconcile_s=cfg.reconcile_s,
        domain=settings.hub.jetstream_domain,
    )
    if uplink is not None:
        uplink.reconnect_listeners.append(watcher.link_restored)
    return watcher
