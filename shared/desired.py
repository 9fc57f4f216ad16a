"""Desired state of the fleet: layers, their merge, revisions and the per-device record (pure).

The operator writes layers into the KV bucket ``agl_config``; the hub merges them for each device
and writes the result under the device's own key, the only key a device may read:

    layer.fleet            what every device runs
    layer.site.<site>      overrides for one site
    layer.device.<device>  overrides for one device
    <device>               the merged record the device watches (hub-written, JSON)

A layer is a TOML/JSON table with ``router``, ``plugins``, ``models`` and ``telemetry``; a later
layer overrides an earlier one key by key (tables merge, everything else is replaced). On the
device, the settings its own file marks ``pinned`` win over the merged state.

    doc = merge([fleet, site, device])
    rev = revision(doc)                  # 16 hex digits; the same doc gives the same revision
    record = DeviceRecord(revision=rev, state=doc, layers=["fleet", "site.berlin"])
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigError

__all__ = [
    "CONFIG_BUCKET",
    "LAYER_PREFIX",
    "SECTIONS",
    "DeviceRecord",
    "apply_pinned",
    "decode_record",
    "diff",
    "encode_record",
    "layer_key",
    "layers_for",
    "merge",
    "revision",
]

CONFIG_BUCKET = "agl_config"
LAYER_PREFIX = "layer."
#: The top-level tables a layer may hold.
SECTIONS = ("router", "plugins", "models", "telemetry")
#: Largest merged record a device reads, in bytes (256 KiB): a KV value, well under NATS's
#: default max_payload (1 MiB). A record holds the merged layers (router policy, plugin and
#: model names with digests, telemetry), never the artifacts themselves.
MAX_RECORD_BYTES = 256 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def layer_key(*, site: str | None = None, device: str | None = None) -> str:
    """The KV key of the fleet layer, a site's layer or a device's layer."""
    if site is not None and device is not None:
        raise ConfigError("a layer is for a site or for a device, not both; pass one of them")
    for kind, name in (("site", site), ("device", device)):
        if name is not None:
            if not _NAME.match(name):
                raise ConfigError(
                    f"{kind} name {name!r} must be 1-64 letters, digits, - or _ (a KV key part)"
                )
            return f"{LAYER_PREFIX}{kind}.{name}"
    return f"{LAYER_PREFIX}fleet"


def layers_for(device: str, site: str | None) -> list[str]:
    """The layer keys that make up ``device``'s state, earliest (weakest) first."""
    keys = [layer_key()]
    if site:
        keys.append(layer_key(site=site))
    keys.append(layer_key(device=device))
    return keys


def _merge_into(base: dict[str, Any], over: Mapping[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def merge(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge layers in order: tables merge key by key, other values (lists too) are replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        _merge_into(out, layer)
    return out


def _get(doc: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def apply_pinned(
    desired: Mapping[str, Any], local: Mapping[str, Any], pinned: Iterable[str]
) -> dict[str, Any]:
    """``desired`` with each pinned dotted path (``router.load_slo_s``) taken from ``local``.

    A pinned path that the local settings do not hold is removed from the desired state, so the
    agent's own default applies there.
    """
    out = copy.deepcopy(dict(desired))
    for dotted in pinned:
        path = [p for p in dotted.split(".") if p]
        if not path:
            continue
        found, value = _get(local, path)
        parent: Any = out
        for part in path[:-1]:
            if not isinstance(parent.get(part), dict):
                parent[part] = {}
            parent = parent[part]
        if found:
            parent[path[-1]] = copy.deepcopy(value)
        else:
            parent.pop(path[-1], None)
    return out


def revision(doc: Mapping[str, Any]) -> str:
    """A short digest of a merged state (canonical JSON); equal states get equal revisions."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths whose value differs, as ``+path`` (added), ``-path`` (removed), ``~path``."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if key not in new:
            out.append(f"-{path}")
        elif key not in old:
            out.append(f"+{path}")
        elif isinstance(old[key], Mapping) and isinstance(new[key], Mapping):
            out.extend(diff(old[key], new[key], f"{path}."))
        elif old[key] != new[key]:
            out.append(f"~{path}")
    return out


class DeviceRecord(BaseModel):
    """What the hub writes under a device's own key: the merged state and where it came from."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    revision: str = Field(min_length=1, max_length=64)
    state: dict[str, Any] = Field(default_factory=dict)
    layers: list[str] = Field(default_factory=list, max_length=16)
    rollout: str | None = Field(None, description="The rollout that wrote this record, if any.")


def encode_record(record: DeviceRecord) -> bytes:
    """Compact JSON of ``record``."""
    return record.model_dump_json().encode()


def decode_record(data: bytes) -> DeviceRecord:
    """Parse a device record; :class:`ConfigError` says what is wrong."""
    if len(data) > MAX_RECORD_BYTES:
        raise ConfigError(
            f"desired-state record is {len(data)} bytes; at most {MAX_RECORD_BYTES}: shrink the "
            "layers on the hub (`hubctl policy show --device DEVICE` shows the merged state), "
            "e.g. fewer plugins or smaller router rules"
        )
    try:
        return DeviceRecord.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(record)"
        raise ConfigError(f"desired-state record is malformed: {where}: {first['msg']}") from None
