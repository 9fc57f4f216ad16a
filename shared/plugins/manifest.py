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
max_output_bytes = 1048576        # a longer verdict is a failure (the fail strategy decides)
stream_window_chars = 0           # look-ahead on streamed answers: 0 = each chunk as it comes

[memory]
max_pages = 16                    # 64 KiB pages of linear memory
recycle_pages = 64                # optional: drop a pooled instance that grew past this

[config]                          # strings reach the plugin as is; lists newline-joined
phrases = ["ignore previous instructions"]

[grants]                          # everything is denied unless granted here
wasi = false
allowed_hosts = []
allowed_paths = {}                # "host dir" = "guest dir": read-only; "rw:host dir" to write
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.plugins.errors import PluginIntegrityError, PluginManifestError

__all__ = [
    "MANIFEST_SUFFIX",
    "MAX_MANIFEST_BYTES",
    "MAX_MODULE_BYTES",
    "PAGE_BYTES",
    "PHASES",
    "Grants",
    "Hook",
    "MemoryLimits",
    "PathGrant",
    "PluginManifest",
    "config_strings",
    "file_sha256",
    "load_manifest",
    "phase_rank",
    "read_regular_file",
    "read_verified_module",
]

MANIFEST_SUFFIX = ".plugin.toml"
"""Files in a plugin directory that end with this are manifests."""

PHASES: dict[str, int] = {"authn": 100, "authz": 200, "filter": 300, "route": 400, "stats": 500}
"""Named phases and their ranks (numeric phases sort among them)."""

MAX_MANIFEST_BYTES = 256 * 1024
"""A manifest larger than this is refused unread."""

MAX_MODULE_BYTES = 64 * 1024 * 1024
"""A module larger than this is refused unread."""

PAGE_BYTES = 65536
"""One WebAssembly page."""

Hook = Literal["on_request", "on_response"]
ConfigValue = str | int | float | bool | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryLimits(_Strict):
    """Caps on the plugin's linear memory."""

    max_pages: Annotated[int, Field(ge=1, le=65536)] = 16
    """64 KiB pages the module may grow to; growing past it fails (the module traps)."""
    recycle_pages: Annotated[int, Field(ge=1, le=65536)] | None = None
    """A pooled instance whose memory grew past this many pages is dropped after its call
    (the next call gets a fresh one). None: the host's ``HostLimits.recycle_pages``."""

    @model_validator(mode="after")
    def _recycle_below_max(self) -> MemoryLimits:
        if self.recycle_pages is not None and self.recycle_pages > self.max_pages:
            raise ValueError(
                f"recycle_pages ({self.recycle_pages}) is above max_pages ({self.max_pages}), "
                "so it would never apply; lower it or drop it"
            )
        return self


@dataclass(frozen=True)
class PathGrant:
    """One ``allowed_paths`` entry: a host directory seen by the plugin at ``guest``."""

    host: str
    guest: str
    writable: bool


class Grants(_Strict):
    """What the plugin may reach outside its sandbox; nothing unless granted."""

    wasi: bool = False
    """Link WASI preview 1 (clock, random, and files under ``allowed_paths``)."""
    allowed_hosts: tuple[str, ...] = ()
    """Hosts the plugin may call with Extism's ``http_request`` (globs such as ``*.example.com``)."""
    allowed_paths: dict[str, str] = Field(default_factory=dict)
    """Host directory → guest path, visible only with ``wasi = true``. Read-only unless the
    host directory is written ``rw:/path`` (``ro:/path`` says read-only explicitly)."""

    @field_validator("allowed_paths")
    @classmethod
    def _known_prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            host = key.removeprefix("rw:").removeprefix("ro:")
            if not host or host.startswith(("rw:", "ro:")):
                raise ValueError(f"{key!r} is not a directory; write /dir, ro:/dir or rw:/dir")
        return value

    @property
    def paths(self) -> tuple[PathGrant, ...]:
        """``allowed_paths`` parsed: which host directory, where, and whether it is writable."""
        return tuple(
            PathGrant(
                host=key.removeprefix("rw:").removeprefix("ro:"),
                guest=guest,
                writable=key.startswith("rw:"),
            )
            for key, guest in self.allowed_paths.items()
        )


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
    max_output_bytes: Annotated[int, Field(ge=1, le=MAX_MODULE_BYTES)] = 1024 * 1024
    """A hook's output (its verdict) longer than this is a failure, handled by ``fail``."""
    stream_window_chars: Annotated[int, Field(ge=0, le=4096)] = 0
    """Characters of a streamed answer this plugin must see ahead before any is sent (its
    longest match that can span a space); 0 = each chunk is filtered as it comes."""
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


def read_regular_file(path: Path, *, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (symlinks followed) of at most ``limit`` bytes.

    A FIFO, socket, device or directory is refused without blocking (it is opened with
    ``O_NONBLOCK`` and checked with ``fstat`` before anything is read): ``OSError`` with
    ``EINVAL``; so is a file over ``limit``, with ``EFBIG``. Other ``OSError``s pass through.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # cheap refusal before any open
        raise OSError(errno.EINVAL, _NOT_REGULAR, str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # the file that was opened, whatever replaced the path meanwhile
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, _NOT_REGULAR, str(path))
        chunks = []
        left = limit + 1
        while st.st_size <= limit and left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if st.st_size > limit or len(data) > limit:  # too large, or it grew while being read
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


_NOT_REGULAR = "not a regular file (a FIFO, device or directory?); replace it with a file"


def load_manifest(path: Path) -> PluginManifest:
    """Read and validate one manifest; raises ``PluginManifestError`` saying what to fix."""
    try:
        text = read_regular_file(path, limit=MAX_MANIFEST_BYTES).decode("utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise PluginManifestError(path, f"cannot be read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PluginManifestError(path, f"is not valid TOML ({exc}); fix its syntax") from exc
    except RecursionError:  # tomllib recurses per nesting level: a "TOML bomb"
        raise PluginManifestError(
            path, "is nested too deeply to be a manifest; flatten its tables and arrays"
        ) from None
    if "path" in data:
        raise PluginManifestError(path, "'path' is not a manifest field; remove it")
    try:
        manifest = PluginManifest.model_validate({**data, "path": path})
    except RecursionError:
        raise PluginManifestError(
            path, "is nested too deeply to be a manifest; flatten its tables and arrays"
        ) from None
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
        data = read_regular_file(path, limit=MAX_MODULE_BYTES)
    except OSError as exc:
        hint = "; build it first" if exc.errno == errno.ENOENT else ""
        raise PluginManifestError(
            manifest.path, f"its module {path} cannot be read: {exc.strerror}{hint}"
        ) from exc
    actual = file_sha256(data)
    if actual != manifest.sha256:
        raise PluginIntegrityError(manifest.name, path, expected=manifest.sha256, actual=actual)
    return data
