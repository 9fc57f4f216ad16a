"""The Extism boundary: compile a verified module once, call hooks on a bounded pool of instances.

An Extism instance is not safe to call from two threads at once, so each module keeps a
pool of ``pool_size`` slots; a call takes one (making the instance if the slot is empty,
which is cheap from the compiled module) and gives it back. At most ``pool_size`` instances
exist at once, which is what makes the host's memory budget a real bound. An instance is
dropped rather than reused after a failed call (trap, timeout, memory cap, output over
``max_output_bytes``: its memory may be in any state) and *recycled* when its linear memory
grew past the recycle threshold, since an instance keeps every page it ever grew.
Memory is measured with an export the host adds to the module (see ``_probe.py``).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import extism  # type: ignore[import-untyped]
from extism.extism import CompiledPlugin  # type: ignore[import-untyped]
from extism_sys import lib as extism_lib  # type: ignore[import-untyped]

from shared.plugins._probe import PROBE_EXPORT, with_memory_probe
from shared.plugins.errors import PluginCallError, PluginLoadError, PluginOutputError
from shared.plugins.manifest import Hook, PluginManifest, config_strings

__all__ = ["ModuleStats", "WasmModule", "extism_manifest"]


def extism_manifest(manifest: PluginManifest, wasm: bytes) -> dict[str, Any]:
    """The Extism manifest for a plugin: its limits, its config and only the granted access.

    ``allowed_paths`` entries are read-only (Extism's ``ro:`` prefix, which refuses every
    write, create, rename and delete under the directory) unless the manifest says ``rw:``.
    """
    paths = {
        (grant.host if grant.writable else f"ro:{grant.host}"): grant.guest
        for grant in manifest.grants.paths
    }
    return {
        "wasm": [{"data": wasm, "name": manifest.name}],
        "memory": {"max_pages": manifest.memory.max_pages, "max_var_bytes": 0},
        "timeout_ms": manifest.timeout_ms,
        "allowed_hosts": list(manifest.grants.allowed_hosts),
        "allowed_paths": paths if manifest.grants.wasi else {},
        "config": config_strings(manifest.config),
    }


def _describe(exc: BaseException, manifest: PluginManifest) -> tuple[str, str]:
    """(kind, explanation) of an Extism failure; kind is ``timeout`` or ``error``."""
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "timeout" in lowered or "interrupt" in lowered:
        return "timeout", f"timed out after timeout_ms = {manifest.timeout_ms} ({text})"
    if (
        lowered == "oom"
        or "out of memory" in lowered
        or ("memory" in lowered and ("limit" in lowered or "grow" in lowered or "page" in lowered))
    ):
        return "error", f"hit its memory cap of {manifest.memory.max_pages} pages ({text})"
    if "not allowed" in lowered or "http" in lowered:
        return "error", f"was denied host access it was not granted ({text})"
    return "error", text


@dataclass(frozen=True)
class ModuleStats:
    """A snapshot of one module's instance pool."""

    pool_size: int
    idle: int
    """Instances waiting in the pool."""
    recycled: int
    """Instances dropped because their memory grew past the recycle threshold."""
    dropped: int
    """Instances dropped because a call on them failed."""
    largest_pages: int
    """The most linear memory (pages) seen in one instance after a call; 0 when not measured."""


class WasmModule:
    """A plugin's compiled module plus its pool of instances; ``call`` runs one hook."""

    def __init__(
        self,
        manifest: PluginManifest,
        wasm: bytes,
        *,
        pool_size: int = 8,
        recycle_pages: int | None = None,
    ) -> None:
        self.manifest = manifest
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._recycled = self._dropped = self._largest = 0
        if PROBE_EXPORT.encode() in wasm:
            raise PluginLoadError(
                manifest.name, f"the module uses the host's reserved name {PROBE_EXPORT}; rename it"
            )
        probed = with_memory_probe(wasm) if recycle_pages is not None else None
        try:
            first = self._compile(probed) if probed is not None else None
        except extism.Error:
            first = None  # the probe did not fit this module: run it as is, unmeasured
        self._probe = first is not None
        try:
            first = first or self._compile(wasm)
        except extism.Error as exc:
            raise PluginLoadError(
                manifest.name,
                f"{_describe(exc, manifest)[1]}; a module may import only extism:host/env "
                "(and WASI when grants.wasi = true)",
            ) from exc
        for hook in manifest.hooks:
            if not first.function_exists(hook):
                raise PluginLoadError(
                    manifest.name, f"the module does not export {hook}, which its manifest lists"
                )
        # Recycle past the threshold, or past the memory a fresh instance starts with.
        self.recycle_pages = (
            max(recycle_pages, self._pages(first)) if recycle_pages is not None else None
        )
        # Last in, first out: a warm instance is reused before an empty slot gets one made.
        self._slots: queue.LifoQueue[Any] = queue.LifoQueue(pool_size)
        for _ in range(pool_size - 1):
            self._slots.put(None)  # made on first use
        self._slots.put(first)

    def _compile(self, wasm: bytes) -> Any:
        """Compile ``wasm`` as this plugin's module and return a first instance of it."""
        manifest = self.manifest
        self._compiled = CompiledPlugin(
            extism_manifest(manifest, wasm), wasi=manifest.grants.wasi, functions=[]
        )
        return self._instance()

    def _instance(self) -> Any:
        return extism.Plugin(self._compiled, functions=[])

    def _pages(self, instance: Any) -> int:
        """Linear memory of ``instance`` in pages (the probe's exit code); 0 when not probed.

        A probe that fails (-1) reports the whole address space, so the instance is recycled.
        """
        if not self._probe:
            return 0
        pages = int(extism_lib.extism_plugin_call(instance.plugin, PROBE_EXPORT.encode(), b"", 0))
        return pages if pages >= 0 else 65536

    def stats(self) -> ModuleStats:
        """How the pool stands now."""
        idle = sum(1 for slot in list(self._slots.queue) if slot is not None)
        with self._lock:
            return ModuleStats(self.pool_size, idle, self._recycled, self._dropped, self._largest)

    def _count(self, *, dropped: int = 0, recycled: int = 0, pages: int = 0) -> None:
        with self._lock:
            self._dropped += dropped
            self._recycled += recycled
            self._largest = max(self._largest, pages)

    def call(self, hook: Hook, payload: bytes) -> bytes:
        """Run ``hook`` with ``payload`` as input; raises ``PluginCallError`` when the call fails."""
        name = self.manifest.name
        try:
            instance = self._slots.get(timeout=1.0 + self.manifest.timeout_ms / 1000)
        except queue.Empty:
            raise PluginCallError(
                name, hook, f"all {self.pool_size} instances stayed busy; the host is overloaded"
            ) from None
        keep = None
        try:
            if instance is None:
                instance = self._instance()
            buffer = instance.call(hook, payload, parse=None)
            if len(buffer) > self.manifest.max_output_bytes:
                raise PluginOutputError(
                    name,
                    hook,
                    f"output of {len(buffer)} bytes is over max_output_bytes = "
                    f"{self.manifest.max_output_bytes}; the plugin is treated as failed",
                )
            output = bytes(buffer)
            keep = self._keep(instance)
        except extism.Error as exc:
            self._count(dropped=1)
            kind, detail = _describe(exc, self.manifest)
            raise PluginCallError(name, hook, detail, kind=kind) from exc
        except PluginCallError:
            self._count(dropped=1)
            raise
        finally:
            self._slots.put(keep)  # None: the next call makes a fresh instance
        return output

    def _keep(self, instance: Any) -> Any:
        """``instance`` if it may go back to the pool, None when its memory grew too large."""
        if self.recycle_pages is None:
            return instance
        pages = self._pages(instance)
        if pages > self.recycle_pages:
            self._count(recycled=1, pages=pages)
            return None
        self._count(pages=pages)
        return instance
