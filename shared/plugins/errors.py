"""Errors raised by the plugin host (``shared.plugins``).

    AglError
    └── PluginError               anything about a Wasm plugin
        ├── PluginManifestError   a manifest is missing, unreadable or invalid
        ├── PluginIntegrityError  a module's sha256 differs from the one its manifest pins
        ├── PluginLoadError       the module does not compile, link or export its hooks
        ├── PluginCallError       a call trapped, timed out, hit its memory cap or was denied
        │   └── PluginOutputError the call returned something that is not a valid verdict
        └── PluginRejectedError   a response plugin rejected a stream (status and message inside)

Extism's exceptions never leave this package: they become ``PluginLoadError`` or ``PluginCallError``.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import AglError

__all__ = [
    "PluginCallError",
    "PluginError",
    "PluginIntegrityError",
    "PluginLoadError",
    "PluginManifestError",
    "PluginOutputError",
    "PluginRejectedError",
]


class PluginError(AglError):
    """Base class for plugin errors."""


class PluginManifestError(PluginError):
    """A manifest cannot be read or does not validate."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"plugin manifest {path}: {detail}")
        self.path = path
        self.detail = detail


class PluginIntegrityError(PluginError):
    """A module's sha256 is not the one its manifest pins; the plugin is refused."""

    def __init__(self, name: str, path: Path, *, expected: str, actual: str) -> None:
        super().__init__(
            f"plugin {name}: module {path} has sha256 {actual}, but its manifest pins {expected}; "
            "rebuild the module (wasm_plugins/build.sh) or put the module's digest "
            "(sha256sum) in the manifest's sha256"
        )
        self.name = name
        self.path = path
        self.expected = expected
        self.actual = actual


class PluginLoadError(PluginError):
    """The runtime refused the module: it does not compile, imports what is not granted, or lacks a hook."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"plugin {name} cannot be loaded: {detail}")
        self.name = name
        self.detail = detail


class PluginCallError(PluginError):
    """One hook call failed: a trap, its timeout, its memory cap, or a denied host call."""

    def __init__(self, name: str, hook: str, detail: str) -> None:
        super().__init__(f"plugin {name} failed in {hook}: {detail}")
        self.name = name
        self.hook = hook
        self.detail = detail


class PluginOutputError(PluginCallError):
    """A hook returned output that is not a valid verdict (bad JSON, unknown action …)."""


class PluginRejectedError(PluginError):
    """A response plugin rejected a streamed answer; the stream must stop with this status."""

    def __init__(self, *, plugin: str, status: int, message: str) -> None:
        super().__init__(f"plugin {plugin} rejected the response ({status}): {message}")
        self.plugin = plugin
        self.status = status
        self.message = message
