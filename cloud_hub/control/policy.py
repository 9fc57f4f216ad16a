"""Desired-state layers in KV ``agl_config`` and the merged record of each device (NATS I/O).

    kv = await open_config(nc)
    doc = read_layer_file(Path("policy.toml"))         # PolicyError: TOML or schema errors
    await set_layer(kv, layer_key(site="berlin"), doc)
    changed = await materialize_all(nc, kv)            # devices whose record changed

Every layer is checked with the agent's own schema before it is stored. The hub cannot import the
agent, so the check runs ``python -m edge_agent.control.desired_schema`` (same distribution) and
shows its field-level message. A device reads only its own key, so the hub merges the layers
(plus the change of an active rollout that has reached the device) and writes the result there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from cloud_hub.control.registry import Registry
from cloud_hub.errors import HubError
from shared.desired import (
    CONFIG_BUCKET,
    LAYER_PREFIX,
    DeviceRecord,
    decode_record,
    encode_record,
    layers_for,
    merge,
    revision,
)
from shared.errors import ConfigError

__all__ = [
    "PolicyError",
    "check_layer",
    "ensure_config",
    "materialize",
    "materialize_all",
    "open_config",
    "read_layer",
    "read_layer_file",
    "set_layer",
]

log = logging.getLogger(__name__)


class PolicyError(HubError):
    """A policy file or layer is invalid, or the config bucket cannot be used."""


def check_layer(doc: Mapping[str, Any], *, source: str) -> None:
    """Validate with the agent's schema (a child process); PolicyError with its message."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "edge_agent.control.desired_schema"],
            input=json.dumps(doc), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PolicyError(f"cannot run the agent's schema check: {exc}") from None
    if out.returncode != 0:
        text = out.stdout.strip() or out.stderr.strip()[-2000:]
        raise PolicyError(f"{source}: {text}")


def read_layer_file(path: Path) -> dict[str, Any]:
    """A policy TOML file, checked with the agent's schema."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path} is not valid TOML: {exc}") from None
    check_layer(doc, source=str(path))
    return doc


#: Values ``agl_config`` keeps per key (a layer or a device's record): the current one and the
#: four before it, which ``nats kv history agl_config KEY`` shows; older ones are dropped.
CONFIG_HISTORY = 5


async def open_config(nc: Client) -> KeyValue:
    """The ``agl_config`` bucket (direct gets on, so devices can read their own key); created
    (history ``CONFIG_HISTORY``) when missing."""
    js = nc.jetstream()
    try:
        return await js.key_value(CONFIG_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        pass
    return await js.create_key_value(
        KeyValueConfig(bucket=CONFIG_BUCKET, history=CONFIG_HISTORY, direct=True)
    )


async def ensure_config(nc: Client) -> None:
    """Create ``agl_config`` at the hub's start, so devices watch their key before the first
    ``hubctl policy set`` instead of retrying an absent bucket; a failure is logged, not raised."""
    try:
        await open_config(nc)
    except Exception as exc:  # the devices' watches then wait for `hubctl policy set`
        log.warning(
            "desired-state bucket %s not created (%s); devices wait for `hubctl policy set`",
            CONFIG_BUCKET,
            exc or type(exc).__name__,
        )


async def read_layer(kv: KeyValue, key: str) -> dict[str, Any]:
    """A stored layer ({} when unset)."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return {}
    return dict(json.loads(entry.value)) if entry.value else {}


async def set_layer(kv: KeyValue, key: str, doc: Mapping[str, Any]) -> None:
    """Store a layer (already checked)."""
    if not key.startswith(LAYER_PREFIX):
        raise PolicyError(f"{key} is not a layer key")
    await kv.put(key, json.dumps(doc, sort_keys=True).encode())


async def merged_for(
    kv: KeyValue, device: str, site: str | None, overlays: Sequence[Mapping[str, Any]] = ()
) -> tuple[dict[str, Any], list[str]]:
    """The device's merged state and the layer keys (and overlays) it came from."""
    keys = layers_for(device, site)
    docs = [await read_layer(kv, k) for k in keys]
    return merge([*docs, *overlays]), [k.removeprefix(LAYER_PREFIX) for k in keys]


async def current_record(kv: KeyValue, device: str) -> DeviceRecord | None:
    """What the device is told now (None when nothing was written)."""
    try:
        entry = await kv.get(device)
    except nats.js.errors.KeyNotFoundError:
        return None
    try:
        return decode_record(entry.value) if entry.value else None
    except ConfigError:
        return None


async def materialize(
    kv: KeyValue,
    device: str,
    site: str | None,
    *,
    overlays: Sequence[Mapping[str, Any]] = (),
) -> DeviceRecord | None:
    """Write the device's merged record when its revision changed; the new record or None."""
    state, layers = await merged_for(kv, device, site, overlays)
    record = DeviceRecord(revision=revision(state), state=state, layers=layers)
    old = await current_record(kv, device)
    if old is not None and old.revision == record.revision:
        return None
    await kv.put(device, encode_record(record))
    return record


async def device_sites(nc: Client) -> dict[str, str | None]:
    """Every registered device and its site (from KV agl_devices)."""
    with contextlib.suppress(HubError):
        registry = await Registry.open(nc, create=False)
        return {e.device: e.site for e in await registry.entries()}
    return {}


async def materialize_all(
    nc: Client,
    kv: KeyValue,
    *,
    only: Sequence[str] | None = None,
    overlays: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    extra_devices: Sequence[str] = (),
) -> list[str]:
    """Re-merge the records of every known device (or ``only`` those); the devices changed."""
    sites = await device_sites(nc)
    for device in extra_devices:
        sites.setdefault(device, None)
    changed = []
    for device, site in sorted(sites.items()):
        if only is not None and device not in only:
            continue
        extra = (overlays or {}).get(device, ())
        record = await materialize(kv, device, site, overlays=extra)
        if record is not None:
            changed.append(device)
    return changed
