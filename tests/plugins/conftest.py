"""Helpers for the plugin tests: real modules from wasm_plugins/, manifests written per test."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "wasm_plugins"
HOSTILE = SAMPLES / "tests"

PluginFactory = Callable[..., Path]


def toml_value(value: Any) -> str:
    """A TOML literal for a str/int/bool/list (JSON's syntax is TOML's for these)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def toml_inline(value: Any) -> str:
    """A TOML literal that may also be a table (written inline: ``{ "k" = "v" }``)."""
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_inline(v)}" for k, v in value.items()) + " }"
        )
    return toml_value(value)


def write_plugin(
    directory: Path,
    name: str,
    module: Path,
    *,
    config: dict[str, Any] | None = None,
    memory_pages: int = 16,
    memory_recycle_pages: int | None = None,
    grants: dict[str, Any] | None = None,
    sha256: str | None = None,
    **fields: Any,
) -> Path:
    """Copy ``module`` to ``directory/<name>.wasm`` and write its manifest; return the manifest."""
    target = directory / f"{name}.wasm"
    shutil.copyfile(module, target)
    digest = sha256 or hashlib.sha256(target.read_bytes()).hexdigest()
    values: dict[str, Any] = {
        "name": name,
        "version": "0.0.1",
        "sha256": digest,
        "hooks": ["on_request"],
        **fields,
    }
    lines = [f"{key} = {toml_value(value)}" for key, value in values.items()]
    lines += ["[memory]", f"max_pages = {memory_pages}"]
    if memory_recycle_pages is not None:
        lines.append(f"recycle_pages = {memory_recycle_pages}")
    lines.append("[config]")
    lines += [f"{key} = {toml_value(value)}" for key, value in (config or {}).items()]
    if grants is not None:
        lines.append("[grants]")
        lines += [f"{key} = {toml_inline(value)}" for key, value in grants.items()]
    manifest = directory / f"{name}.plugin.toml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture()
def plugin_dir(tmp_path: Path) -> Path:
    """An empty plugin directory."""
    d = tmp_path / "plugins"
    d.mkdir()
    return d


@pytest.fixture()
def samples_dir(tmp_path: Path) -> Path:
    """A copy of the three sample plugins (manifests and modules) that a test may change."""
    d = tmp_path / "samples"
    d.mkdir()
    for path in SAMPLES.iterdir():
        if path.name.endswith(".plugin.toml") or path.suffix == ".wasm":
            shutil.copyfile(path, d / path.name)
    return d


def fixed(directory: Path, name: str, verdict: str | dict[str, Any], **fields: Any) -> Path:
    """A plugin that answers ``verdict`` (a JSON document or raw text) to every call."""
    text = verdict if isinstance(verdict, str) else json.dumps(verdict)
    return write_plugin(
        directory, name, HOSTILE / "fixed_verdict.wasm", config={"verdict": text}, **fields
    )


def request(text: str) -> dict[str, Any]:
    """A chat request with one user message."""
    return {"messages": [{"role": "user", "content": text}], "model": "smollm2", "metadata": {}}
