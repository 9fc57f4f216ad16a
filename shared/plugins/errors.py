"""Errors raised by the plugin host (``shared.plugins``).

    AglError
    └── PluginError               anything about a Wasm plugin
        ├── PluginManifestError   a manifest is missing, unreadable or invalid
        ├── PluginIntegrityError  a module's sha256 differs from the one its manifest pins
        ├── PluginLoadError       the module does not compile, link or export its hooks
        ├── PluginBudgetError     the plugins together may need more memory than the host allows
        ├── PluginCallError       a call trapped, timed out, hit its memory cap or was denied
        │   └── PluginOutputError the call returned too much, or something that is not a valid verdict
        └── PluginRejectedError   a response plugin rejected a stream (status and message inside)

Extism's exceptions never leave this package: they become ``PluginLoadError`` or ``PluginCallError``.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import AglError

__all__ = [
    "PluginBudgetError",
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


class PluginBudgetError(PluginError):
    """The plugins' memory caps, times their instance pools, add up to more than the host's budget.

    ``needed`` and ``budget`` are bytes; ``shares`` maps each plugin to its part of ``needed``.
    """

    def __init__(self, *, needed: int, budget: int, shares: dict[str, int]) -> None:
        largest = sorted(shares.items(), key=lambda item: -item[1])
        listed = ", ".join(f"{name} {_mib(share)}" for name, share in largest)
        super().__init__(
            f"plugins may need up to {_mib(needed)} of linear memory ({listed}: memory.max_pages "
            f"× 64 KiB × the instance pool), over the host's plugin memory budget of {_mib(budget)}; "
            "lower memory.max_pages in the largest manifests, or raise the budget "
            "(HostLimits.memory_budget_bytes)"
        )
        self.needed = needed
        self.budget = budget
        self.shares = shares


def _mib(n: int) -> str:
    return f"{n / 1048576:.0f} MiB" if n >= 1048576 else f"{n / 1024:.0f} KiB"


class PluginCallError(PluginError):
    """One hook call failed: a trap, its timeout, its memory cap, or a denied host call.

    ``kind`` is what failed, for metrics: ``timeout``, or ``error`` for anything else.
    """

    def __init__(self, name: str, hook: str, detail: str, *, kind: str = "error") -> None:
        super().__init__(f"plugin {name} failed in {hook}: {detail}")
        self.name = name
        self.hook = hook
        self.detail = detail
        self.kind = kind


class PluginOutputError(PluginCallError):
    """A hook returned more than ``max_output_bytes``, or output that is not a valid verdict."""


class PluginRejectedError(PluginError):
    """A response plugin rejected a streamed answer; the stream must stop with this status."""

    def __init__(self, *, plugin: str, status: int, message: str) -> None:
        super().__init__(f"plugin {plugin} rejected the response ({status}): {message}")
        self.plugin = plugin
        self.status = status
        self.message = message
