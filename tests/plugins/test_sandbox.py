"""Hostile plugins are contained: timeouts, memory caps, digests, no files, no network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.plugins import (
    PluginChain,
    PluginIntegrityError,
    PluginLoadError,
    PluginManifestError,
)
from tests.plugins.conftest import HOSTILE, fixed, request, write_plugin


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_infinite_loop_is_stopped_by_timeout_and_fail_strategy_decides(
    plugin_dir: Path, fail: str
) -> None:
    write_plugin(plugin_dir, "spin", HOSTILE / "spin.wasm", timeout_ms=100, fail=fail)
    chain = PluginChain.from_directory(plugin_dir)
    result = chain.on_request(request("hi"))  # the 100 ms timeout stops the loop, not a test
    assert result.trace[0].action == "error" and "timed out" in (result.trace[0].error or "")
    if fail == "open":
        assert not result.rejected
    else:
        assert result.rejected and result.status == 503 and result.rejected_by == "spin"
        assert "spin" in (result.message or "") and "fail = closed" in (result.message or "")
    # The instance that timed out was dropped; the plugin keeps working (and timing out).
    assert chain.on_request(request("again")).trace[0].action == "error"


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_memory_growth_is_capped_at_max_pages(plugin_dir: Path, fail: str) -> None:
    # Growing past memory.max_pages traps (Extism's limiter), so the plugin never gets to
    # report its pages; the call fails and the fail strategy decides.
    write_plugin(plugin_dir, "memhog", HOSTILE / "memhog.wasm", memory_pages=8, fail=fail)
    result = PluginChain.from_directory(plugin_dir).on_request(request("hi"))
    assert "memory cap of 8 pages" in (result.trace[0].error or ""), result
    assert result.rejected == (fail == "closed")
    assert "memhog reached" not in (result.message or "")


def test_network_access_is_denied_and_fail_closed_rejects(plugin_dir: Path) -> None:
    write_plugin(plugin_dir, "net", HOSTILE / "net.wasm", fail="closed")
    result = PluginChain.from_directory(plugin_dir).on_request(request("hi"))
    assert result.rejected and result.status == 503 and result.rejected_by == "net"
    assert "net" in (result.trace[0].error or "")


def test_network_denial_with_fail_open_continues(plugin_dir: Path) -> None:
    write_plugin(plugin_dir, "net", HOSTILE / "net.wasm", fail="open")
    fixed(plugin_dir, "after", {"action": "route", "target": "cloud"}, phase="route")
    result = PluginChain.from_directory(plugin_dir).on_request(request("hi"))
    assert not result.rejected and result.route_target == "cloud"
    assert [o.action for o in result.trace] == ["error", "route"]


def test_file_access_without_wasi_grant_is_refused_at_load(plugin_dir: Path) -> None:
    write_plugin(plugin_dir, "wasi_fs", HOSTILE / "wasi_fs.wasm")
    with pytest.raises(PluginLoadError, match="wasi_fs"):
        PluginChain.from_directory(plugin_dir)


def test_tampered_module_is_refused_naming_both_digests(plugin_dir: Path) -> None:
    manifest = fixed(plugin_dir, "victim", {"action": "continue"})
    module = plugin_dir / "victim.wasm"
    pinned = re.search(r'sha256 = "([0-9a-f]{64})"', manifest.read_text())
    assert pinned
    module.write_bytes(module.read_bytes() + b"\0")
    with pytest.raises(PluginIntegrityError) as info:
        PluginChain.from_directory(plugin_dir)
    assert info.value.expected == pinned.group(1)
    assert info.value.expected in str(info.value) and info.value.actual in str(info.value)


def test_module_missing_a_listed_hook_is_refused(plugin_dir: Path) -> None:
    write_plugin(plugin_dir, "memhog", HOSTILE / "memhog.wasm", hooks=["on_request", "on_response"])
    with pytest.raises(PluginLoadError, match="does not export on_response"):
        PluginChain.from_directory(plugin_dir)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ('fail = "sometimes"', "fail"),
        ('phase = "whenever"', "unknown phase"),
        ('surprise = "field"', "surprise"),
        ('module = "../elsewhere.wasm"', "file name next to the manifest"),
    ],
)
def test_bad_manifest_says_what_to_fix(plugin_dir: Path, line: str, complaint: str) -> None:
    manifest = fixed(plugin_dir, "p", {"action": "continue"})
    text = manifest.read_text()
    manifest.write_text(line + "\n" + text)
    with pytest.raises(PluginManifestError, match=complaint):
        PluginChain.from_directory(plugin_dir)


@pytest.mark.parametrize(
    "bomb",
    [
        "config = { a = " + "[" * 50_000 + "]" * 50_000 + " }",
        "x = " + "{ a = " * 5_000 + "1" + " }" * 5_000,
    ],
)
def test_toml_bomb_in_a_manifest_is_a_clear_manifest_error(plugin_dir: Path, bomb: str) -> None:
    manifest = fixed(plugin_dir, "bomb", {"action": "continue"})
    manifest.write_text(bomb + "\n")
    with pytest.raises(PluginManifestError, match="nested too deeply"):
        PluginChain.from_directory(plugin_dir)


def test_oversized_manifest_is_refused(plugin_dir: Path) -> None:
    manifest = fixed(plugin_dir, "big", {"action": "continue"})
    manifest.write_text(manifest.read_text() + "# " + "x" * 300_000 + "\n")
    with pytest.raises(PluginManifestError, match="larger than"):
        PluginChain.from_directory(plugin_dir)


def _wasi_writer(plugin_dir: Path, shared: Path, key: str) -> PluginChain:
    write_plugin(
        plugin_dir,
        "writer",
        HOSTILE / "wasi_write.wasm",
        grants={"wasi": True, "allowed_paths": {key: "/data"}},
    )
    return PluginChain.from_directory(plugin_dir)


@pytest.mark.parametrize("prefix", ["", "ro:"])
def test_allowed_paths_are_read_only_unless_rw(
    plugin_dir: Path, tmp_path: Path, prefix: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    result = _wasi_writer(plugin_dir, shared, f"{prefix}{shared}").on_request(request("x"))
    assert result.rejected and result.status == 403, result
    assert "write refused" in (result.message or "")
    assert not (shared / "written.txt").exists()


def test_allowed_paths_rw_prefix_grants_write(plugin_dir: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    result = _wasi_writer(plugin_dir, shared, f"rw:{shared}").on_request(request("x"))
    assert not result.rejected, result
    assert (shared / "written.txt").read_text() == "plugin was here\n"


def test_allowed_hosts_wildcard_is_warned_about(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_plugin(
        plugin_dir, "net", HOSTILE / "net.wasm", fail="open", grants={"allowed_hosts": ["*"]}
    )
    with caplog.at_level("WARNING", logger="shared.plugins"):
        PluginChain.from_directory(plugin_dir)
    assert any(
        "net" in r.getMessage() and "allowed_hosts" in r.getMessage() and r.levelname == "WARNING"
        for r in caplog.records
    ), caplog.text
