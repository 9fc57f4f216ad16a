"""Host-wide bounds on plugins: instances per plugin, when to recycle one, and the memory budget.

    limits = HostLimits(pool_size=8, recycle_pages=256, memory_budget_bytes=256 * 2**20)
    chain = PluginChain.from_directory(path, limits=limits)   # PluginBudgetError if over budget

A plugin's manifest caps one instance (``memory.max_pages``); the host runs at most
``pool_size`` instances of each plugin at once, so ``max_pages × 64 KiB × pool_size`` bounds
what one plugin can hold, and the sum over a directory must fit ``memory_budget_bytes``.
That is checked when a directory is loaded (or reloaded), before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.plugins.errors import PluginBudgetError
from shared.plugins.manifest import PAGE_BYTES, PluginManifest

__all__ = ["HostLimits", "check_memory_budget", "memory_need"]


@dataclass(frozen=True, kw_only=True)
class HostLimits:
    """The host's bounds on every plugin it loads (the manifests bound each plugin)."""

    pool_size: int = 8
    """Instances of one plugin that may exist at once (idle and busy). A call that finds all
    of them busy waits up to the plugin's ``timeout_ms`` plus one second, then fails."""
    recycle_pages: int = 256
    """Drop an instance whose linear memory grew past this many pages (16 MiB) after a call,
    unless the manifest sets its own ``memory.recycle_pages``."""
    memory_budget_bytes: int = 256 * 1024 * 1024
    """Sum over all plugins of ``memory.max_pages × 64 KiB × pool_size`` may not exceed this."""

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.recycle_pages < 1 or self.memory_budget_bytes < PAGE_BYTES:
            raise ValueError(
                "HostLimits: pool_size and recycle_pages must be at least 1, "
                "memory_budget_bytes at least one 64 KiB page"
            )


def memory_need(manifest: PluginManifest, limits: HostLimits) -> int:
    """Most linear memory one plugin's instances can hold together, in bytes."""
    return manifest.memory.max_pages * PAGE_BYTES * limits.pool_size


def check_memory_budget(manifests: Iterable[PluginManifest], limits: HostLimits) -> int:
    """The memory the plugins may need together; raises ``PluginBudgetError`` past the budget."""
    shares = {m.name: memory_need(m, limits) for m in manifests}
    needed = sum(shares.values())
    if needed > limits.memory_budget_bytes:
        raise PluginBudgetError(needed=needed, budget=limits.memory_budget_bytes, shares=shares)
    return needed
