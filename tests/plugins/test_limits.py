"""Bounds on what a plugin may cost: output size, memory kept by pooled instances, the memory budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.plugins import HostLimits, PluginBudgetError, PluginChain, PluginWatcher
from tests.plugins.conftest import HOSTILE, fixed, request, write_plugin

MIB = 1024 * 1024


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_output_past_max_output_bytes_is_a_failure(plugin_dir: Path, fail: str) -> None:
    write_plugin(
        plugin_dir,
        "flood",
        HOSTILE / "flood.wasm",
        config={"bytes": 200_000},
        memory_pages=64,
        max_output_bytes=65_536,
        fail=fail,
        hooks=["on_request", "on_response"],
    )
    chain = PluginChain.from_directory(plugin_dir)
    for result in (chain.on_request(request("x")), chain.on_response("y")):
        outcome = result.trace[0]
        assert outcome.action == "error" and "max_output_bytes = 65536" in (outcome.error or "")
        assert result.rejected == (fail == "closed")
        assert len(result.message or "") < 1000  # the flood never reaches the client
    assert chain.plugins[0].module.stats().dropped == 2  # the instance that flooded is gone


def test_output_within_max_output_bytes_passes(plugin_dir: Path) -> None:
    write_plugin(
        plugin_dir, "flood", HOSTILE / "flood.wasm", config={"bytes": 1000}, memory_pages=64
    )
    result = PluginChain.from_directory(plugin_dir).on_request(request("x"))
    assert result.rejected and result.status == 400 and len(result.message or "") == 1000


def test_default_max_output_bytes_is_one_mebibyte(plugin_dir: Path) -> None:
    manifest = fixed(plugin_dir, "p", {"action": "continue"})
    plugin = PluginChain.from_directory(plugin_dir).plugins[0]
    assert manifest.exists() and plugin.manifest.max_output_bytes == MIB


def test_instance_that_grew_past_recycle_pages_is_recycled(plugin_dir: Path) -> None:
    write_plugin(
        plugin_dir,
        "grow",
        HOSTILE / "grow.wasm",
        config={"pages": 40},
        memory_pages=512,
        memory_recycle_pages=64,
    )
    chain = PluginChain.from_directory(plugin_dir)
    module = chain.plugins[0].module
    assert not chain.on_request(request("x")).rejected  # grew to ~42 pages: kept
    assert module.stats().recycled == 0 and module.stats().idle == 1
    assert not chain.on_request(request("x")).rejected  # ~82 pages, past 64: recycled
    stats = module.stats()
    assert stats.recycled == 1 and stats.idle == 0 and stats.largest_pages > 64
    # The next call gets a fresh instance, so the plugin keeps working.
    assert chain.on_request(request("x")).trace[0].action == "continue"


def test_host_recycle_threshold_applies_when_the_manifest_sets_none(plugin_dir: Path) -> None:
    write_plugin(plugin_dir, "grow", HOSTILE / "grow.wasm", config={"pages": 40}, memory_pages=512)
    chain = PluginChain.from_directory(plugin_dir, limits=HostLimits(recycle_pages=32))
    chain.on_request(request("x"))
    assert chain.plugins[0].module.stats().recycled == 1


def test_pool_size_bounds_live_instances(plugin_dir: Path) -> None:
    fixed(plugin_dir, "p", {"action": "continue"})
    chain = PluginChain.from_directory(plugin_dir, limits=HostLimits(pool_size=2))
    assert chain.plugins[0].module.stats().pool_size == 2


def test_memory_budget_over_all_plugins_is_checked_at_load(plugin_dir: Path) -> None:
    fixed(plugin_dir, "small", {"action": "continue"}, memory_pages=16)
    fixed(plugin_dir, "huge", {"action": "continue"}, memory_pages=4096)  # 256 MiB each
    limits = HostLimits(pool_size=4, memory_budget_bytes=512 * MIB)
    with pytest.raises(PluginBudgetError) as info:
        PluginChain.from_directory(plugin_dir, limits=limits)
    error = info.value
    assert error.needed == (16 + 4096) * 65536 * 4 and error.budget == 512 * MIB
    text = str(error)
    assert "huge" in text and "1024 MiB" in text and "512 MiB" in text
    assert "memory.max_pages" in text  # says what to change
    # A reload that would break the budget keeps the current chain.
    (plugin_dir / "huge.plugin.toml").unlink()
    watcher = PluginWatcher(plugin_dir, limits=limits)
    fixed(plugin_dir, "huge", {"action": "continue"}, memory_pages=4096)
    assert not watcher.check() and isinstance(watcher.last_error, PluginBudgetError)
    assert watcher.chain.names() == ["small"]


def test_samples_fit_the_default_budget() -> None:
    from tests.plugins.conftest import SAMPLES

    chain = PluginChain.from_directory(SAMPLES)
    assert chain.memory_bytes <= HostLimits().memory_budget_bytes
