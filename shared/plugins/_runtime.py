"""The Extism boundary: compile a verified module once, call hooks on pooled instances.

An Extism instance is not safe to call from two threads at once, so each module keeps a
pool of idle instances; a call takes one (or makes one, which is cheap from the compiled
module) and gives it back. An instance whose call failed (trap, timeout, memory cap) is
dropped rather than reused, since its memory may be in any state.
"""

from __future__ import annotations

import queue
from typing import Any

import extism  # type: ignore[import-untyped]
from extism.extism import CompiledPlugin  # type: ignore[import-untyped]

from shared.plugins.errors import PluginCallError, PluginLoadError
from shared.plugins.manifest import Hook, PluginManifest, config_strings

__all__ = ["WasmModule", "extism_manifest"]

_MAX_IDLE = 32


def extism_manifest(manifest: PluginManifest, wasm: bytes) -> dict[str, Any]:
    """The Extism manifest for a plugin: its limits, its config and only the granted access."""
    return {
        "wasm": [{"data": wasm, "name": manifest.name}],
        "memory": {"max_pages": manifest.memory.max_pages, "max_var_bytes": 0},
        "timeout_ms": manifest.timeout_ms,
        "allowed_hosts": list(manifest.grants.allowed_hosts),
        "allowed_paths": dict(manifest.grants.allowed_paths) if manifest.grants.wasi else {},
        "config": config_strings(manifest.config),
    }


def _describe(exc: BaseException, manifest: PluginManifest) -> str:
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "timeout" in lowered or "interrupt" in lowered:
        return f"timed out after timeout_ms = {manifest.timeout_ms} ({text})"
    if (
        lowered == "oom"
        or "out of memory" in lowered
        or ("memory" in lowered and ("limit" in lowered or "grow" in lowered or "page" in lowered))
    ):
        return f"hit its memory cap of {manifest.memory.max_pages} pages ({text})"
    if "not allowed" in lowered or "http" in lowered:
        return f"was denied host access it was not granted ({text})"
    return text


class WasmModule:
    """A plugin's compiled module plus a pool of instances; ``call`` runs one hook."""

    def __init__(self, manifest: PluginManifest, wasm: bytes) -> None:
        self.manifest = manifest
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            self._compiled = CompiledPlugin(
                extism_manifest(manifest, wasm), wasi=manifest.grants.wasi, functions=[]
            )
            first = self._instance()
        except extism.Error as exc:
            raise PluginLoadError(
                manifest.name,
                f"{_describe(exc, manifest)}; a module may import only extism:host/env "
                "(and WASI when grants.wasi = true)",
            ) from exc
        for hook in manifest.hooks:
            if not first.function_exists(hook):
                raise PluginLoadError(
                    manifest.name, f"the module does not export {hook}, which its manifest lists"
                )
        self._idle.put(first)

    def _instance(self) -> Any:
        return extism.Plugin(self._compiled, functions=[])

    def call(self, hook: Hook, payload: bytes) -> bytes:
        """Run ``hook`` with ``payload`` as input; raises ``PluginCallError`` when the call fails."""
        try:
            instance = self._idle.get_nowait()
        except queue.Empty:
            try:
                instance = self._instance()
            except extism.Error as exc:
                raise PluginCallError(
                    self.manifest.name, hook, _describe(exc, self.manifest)
                ) from exc
        try:
            output = bytes(instance.call(hook, payload))
        except extism.Error as exc:
            raise PluginCallError(self.manifest.name, hook, _describe(exc, self.manifest)) from exc
        if self._idle.qsize() < _MAX_IDLE:
            self._idle.put(instance)
        return output
