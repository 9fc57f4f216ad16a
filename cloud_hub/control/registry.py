"""The device registry in JetStream KV ``agl_devices``: one key per device id (NATS I/O).

    registry = await Registry.open(nc)             # creates the bucket (direct gets) if needed
    await registry.record_enrollment("dev-1", site="berlin", labels={}, enrolled_at=now)
    entries = await registry.entries()             # every DeviceEntry, by id
    entry = await registry.get("dev-1")

Liveness and the fleet summary are derived from these records in pure code (``fleet``).
"""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from pydantic import ValidationError

from cloud_hub.control.auth import REGISTRY_BUCKET
from cloud_hub.control.fleet import DeviceEntry
from cloud_hub.control.kv_keys import BucketReadError, bucket_keys
from cloud_hub.errors import HubError

log = logging.getLogger(__name__)

#: History kept per key: the last few heartbeats help when a device flaps.
_HISTORY = 3
#: Tries at creating the bucket when the server does not answer in time.
_CREATE_ATTEMPTS = 2


class RegistryError(HubError):
    """The registry bucket cannot be reached or created (is JetStream on?)."""


class Registry:
    """Reads and writes :class:`DeviceEntry` records in KV ``agl_devices``."""

    def __init__(self, kv: KeyValue, nc: Client) -> None:
        self._kv = kv
        self._nc = nc

    @classmethod
    async def open(cls, nc: Client, *, create: bool = True) -> Registry:
        """Bind the bucket, creating it (with direct gets) when ``create`` and it is missing."""
        js = nc.jetstream()
        try:
            return cls(await js.key_value(REGISTRY_BUCKET), nc)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                raise RegistryError(
                    f"no device registry yet (KV {REGISTRY_BUCKET}); start `hubctl serve` or "
                    "enroll a device first"
                ) from None
        except Exception as exc:  # no JetStream, no permission, timeout …
            raise RegistryError(
                f"cannot open the device registry (KV {REGISTRY_BUCKET}): {exc or type(exc).__name__}; "
                "the NATS server needs JetStream on (-js) and the account JetStream limits"
            ) from None
        config = KeyValueConfig(bucket=REGISTRY_BUCKET, history=_HISTORY, direct=True)
        problem = ""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return cls(await js.create_key_value(config), nc)
            except nats.errors.TimeoutError:
                # A busy server may finish the create after our wait; asking again with the
                # same config is answered with the bucket (creating is idempotent).
                problem = "no answer in time"
            except Exception as exc:
                problem = str(exc) or type(exc).__name__
                break
        raise RegistryError(f"cannot create the device registry (KV {REGISTRY_BUCKET}): {problem}")

    async def get(self, device: str) -> DeviceEntry | None:
        """The record of ``device``, or None (a damaged record is logged and treated as none)."""
        try:
            found = await self._kv.get(device)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not found.value:
            return None
        try:
            return DeviceEntry.model_validate_json(found.value)
        except ValidationError as exc:
            log.warning("registry entry %s is damaged (%s); starting it afresh", device, exc)
            return None

    async def put(self, entry: DeviceEntry) -> None:
        """Store ``entry`` under its device id."""
        await self._kv.put(entry.device, entry.model_dump_json(exclude_none=True).encode())

    async def record_enrollment(
        self, device: str, *, site: str | None, labels: dict[str, str], enrolled_at: float
    ) -> DeviceEntry:
        """Create or update the device's site, labels and enrollment time (keeps heartbeats)."""
        entry = await self.get(device) or DeviceEntry(device=device)
        entry = entry.model_copy(
            update={"site": site, "labels": labels, "enrolled_at": enrolled_at, "revoked_at": None}
        )
        await self.put(entry)
        return entry

    async def record_revocation(self, device: str, *, at: float) -> None:
        """Mark the device revoked (its record stays for the audit trail)."""
        entry = await self.get(device) or DeviceEntry(device=device)
        await self.put(entry.model_copy(update={"revoked_at": at}))

    async def entries(self) -> list[DeviceEntry]:
        """Every device's record, sorted by id (the server's own key list: ``kv_keys``)."""
        try:
            keys = await bucket_keys(self._nc, REGISTRY_BUCKET)
        except BucketReadError as exc:
            raise RegistryError(str(exc)) from None
        found = [await self.get(k) for k in keys]
        return [e for e in found if e is not None]
