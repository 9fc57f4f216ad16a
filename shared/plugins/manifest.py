"""Plugin manifests (``<name>.plugin.toml``): parsing, validation and digest checks.

name = "pii_redact"
version = "1.0.0"
module = "pii_redact.wasm"        # default: <name>.wasm, next to the manifest
sha256 = "…64 hex digits…"        # required; sha256sum of the module
hooks = ["on_request", "on_response"]
phase = "filter"                  # authn < authz < filter < route < stats, or a number
priority = 100                    # higher runs first within a phase
fail = "closed"                   # or "open"
timeout_ms = 50

[memory]
max_pages = 16                    # 64 KiB pages of linear memory

[config]                          # strings reach the plugin as is; lists newline-joined
phrases = ["ignore previous instructions"]

[grants]                          # everything is denied unless granted here
wasi = false
allowed_hosts = []
allowed_paths = {}
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.plugins.errors import PluginIntegrityError, PluginManifestError

__all__ = [
    "MANIFEST_SUFFIX",
    "PHASES",
    "Grants",
    "Hook",
    "MemoryLimits",
    "PluginManifest",
    "config_strings",
    "file_sha256",
    "load_manifest",
    "phase_rank",
    "read_verified_module",
]

MANIFEST_SUFFIX = ".plugin.toml"
"""Files in a plugin directory that end with this are manifests."""

PHASES: dict[str, int] = {"authn": 100, "authz": 200, "filter": 300, "route": 400, "stats": 500}
"""Named phases and their ranks (numeric phases sort among them)."""

Hook = Literal["on_request", "on_response"]
ConfigValue = str | int | float | bool | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryLimits(_Strict):
    """Caps on the plugin's linear memory."""

    max_pages: Annotated[int, Field(ge=1, le=65536)] = 16
    """64 KiB pages the module may grow to; growing past it fails (the module traps)."""


class Grants(_Strict):
    """What the plugin may reach outside its sandbox; nothing unless granted."""

    wasi: bool = False
    """Link WASI preview 1 (clock, random, and files under ``allowed_paths``)."""
    allowed_hosts: tuple[str, ...] = ()
    """Hosts the plugin may call with Extism's ``http_request`` (globs such as ``*.example.com``)."""
    allowed_paths: dict[str, str] = Field(default_factory=dict)
    """Host directory → guest path, visible only with ``wasi = true``."""


class PluginManifest(_Strict):
    """One plugin's manifest, validated. ``path`` is where it was read from."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    module: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hooks: Annotated[tuple[Hook, ...], Field(min_length=1)]
    phase: str | int = "filter"
    priority: int = 0
    fail: Literal["open", "closed"] = "closed"
    timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 50
    memory: MemoryLimits = MemoryLimits()
    config: dict[str, ConfigValue] = Field(default_factory=dict)
    grants: Grants = Grants()
    path: Path = Path(".")

    @field_validator("phase")
    @classmethod
    def _known_phase(cls, value: str | int) -> str | int:
        if isinstance(value, str) and value not in PHASES:
            raise ValueError(f"unknown phase {value!r}; use one of {', '.join(PHASES)} or a number")
        return value

    @field_validator("module")
    @classmethod
    def _plain_file_name(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).name != value or value.startswith(".")):
            raise ValueError("module must be a file name next to the manifest, not a path")
        return value

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, value: tuple[Hook, ...]) -> tuple[Hook, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a hook is listed twice")
        return value

    @property
    def module_path(self) -> Path:
        """The module file: ``module`` (or ``<name>.wasm``) next to the manifest."""
        return self.path.parent / (self.module or f"{self.name}.wasm")


def phase_rank(phase: str | int) -> int:
    """Sort rank of a phase: a named phase's rank from ``PHASES``, or the number itself."""
    return PHASES[phase] if isinstance(phase, str) else phase


def config_strings(config: dict[str, ConfigValue]) -> dict[str, str]:
    """The manifest's config as Extism wants it (strings): lists newline-joined, bools lower-case."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, list):
            out[key] = "\n".join(value)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def load_manifest(path: Path) -> PluginManifest:
    """Read and validate one manifest; raises ``PluginManifestError`` saying what to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PluginManifestError(path, f"cannot be read ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PluginManifestError(path, f"is not valid TOML ({exc}); fix its syntax") from exc
    if "path" in data:
        raise PluginManifestError(path, "'path' is not a manifest field; remove it")
    try:
        manifest = PluginManifest.model_validate({**data, "path": path})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PluginManifestError(path, f"{problems}; fix the manifest") from None
    expected_name = path.name.removesuffix(MANIFEST_SUFFIX)
    if path.name.endswith(MANIFEST_SUFFIX) and manifest.name != expected_name:
        raise PluginManifestError(
            path,
            f"name is {manifest.name!r} but the file is named for {expected_name!r}; make them agree",
        )
    return manifest


def file_sha256(data: bytes) -> str:
    """Hex sha256 of module bytes (what ``sha256sum`` prints)."""
    return hashlib.sha256(data).hexdigest()


def read_verified_module(manifest: PluginManifest) -> bytes:
    """The module's bytes after checking them against the manifest's sha256.

    Raises ``PluginManifestError`` when the module is missing and ``PluginIntegrityError``
    (naming both digests) when it was changed.
    """
    path = manifest.module_path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PluginManifestError(
            manifest.path, f"its module {path} cannot be read ({exc.strerror}); build it first"
        ) from exc
    actual = file_sha256(data)
    if actual != manifest.sha256:
        raise PluginIntegrityError(manifest.name, path, expected=manifest.sha256, actual=actual)
    return data
