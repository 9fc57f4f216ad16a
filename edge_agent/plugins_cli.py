"""``edge-agent plugins``: list the plugins of a directory and try one on a request.

edge-agent plugins list --dir wasm_plugins --json
edge-agent plugins test pii_redact request.json --response "mail me at a@b.co"
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from shared.plugins import (
    PluginChain,
    PluginError,
    PluginManifest,
    load_manifest,
    load_plugin,
    order_manifests,
    read_verified_module,
)
from shared.plugins.manifest import MANIFEST_SUFFIX, PAGE_BYTES

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("wasm_plugins"),
    show_default=True,
    envvar="AGL_PLUGINS_DIR",
    help="Plugin directory (*.plugin.toml next to their .wasm modules).",
)


@click.group("plugins")
def plugins() -> None:
    """Inspect and try the WebAssembly plugins of a directory."""


def _limits(m: PluginManifest) -> dict[str, Any]:
    return {
        "timeout_ms": m.timeout_ms,
        "max_pages": m.memory.max_pages,
        "memory_bytes": m.memory.max_pages * PAGE_BYTES,
        "recycle_pages": m.memory.recycle_pages,
        "max_output_bytes": m.max_output_bytes,
        "stream_window_chars": m.stream_window_chars,
    }


def _grants(m: PluginManifest) -> dict[str, Any]:
    return {
        "wasi": m.grants.wasi,
        "allowed_hosts": list(m.grants.allowed_hosts),
        "allowed_paths": [
            {"host": g.host, "guest": g.guest, "mode": "rw" if g.writable else "ro"}
            for g in m.grants.paths
        ],
    }


def _size(n: int) -> str:
    return f"{n // 1048576} MiB" if n % 1048576 == 0 else f"{n / 1024:g} KiB"


def _describe_limits(limits: dict[str, Any]) -> str:
    parts = [
        f"timeout {limits['timeout_ms']} ms",
        f"memory {limits['max_pages']} pages ({_size(limits['memory_bytes'])})",
        f"output ≤ {_size(limits['max_output_bytes'])}",
        f"stream window {limits['stream_window_chars']} chars",
    ]
    if limits["recycle_pages"] is not None:
        parts.append(f"recycled past {limits['recycle_pages']} pages")
    return ", ".join(parts)


def _describe_grants(grants: dict[str, Any]) -> str:
    parts = []
    if grants["allowed_hosts"]:
        hosts = ["any host (*)" if h == "*" else h for h in grants["allowed_hosts"]]
        parts.append("hosts " + ", ".join(hosts))
    if grants["wasi"]:
        paths = [
            f"{p['host']} -> {p['guest']} ({'read-write' if p['mode'] == 'rw' else 'read-only'})"
            for p in grants["allowed_paths"]
        ]
        parts.append("wasi" + (": files " + ", ".join(paths) if paths else " (no files)"))
    return "; ".join(parts) or "none"


def _rows(directory: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    manifests = []
    for path in sorted(directory.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            manifests.append(load_manifest(path))
        except PluginError as exc:
            rows.append({"name": path.name, "error": str(exc), "digest_ok": False})
    for m in order_manifests(manifests):
        row: dict[str, Any] = {
            "name": m.name,
            "version": m.version,
            "hooks": list(m.hooks),
            "phase": m.phase,
            "priority": m.priority,
            "fail": m.fail,
            "limits": _limits(m),
            "grants": _grants(m),
            "digest_ok": True,
        }
        try:
            read_verified_module(m)
        except PluginError as exc:
            row.update(digest_ok=False, error=str(exc))
        rows.append(row)
    return rows


@plugins.command("list")
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_plugins(directory: Path, as_json: bool) -> None:
    """List plugins in run order: hooks, phase, priority, fail mode, digest check, limits and grants."""
    if not directory.is_dir():
        raise click.ClickException(
            f"{directory} is not a directory; pass --dir or set AGL_PLUGINS_DIR"
        )
    rows = _rows(directory)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no *{MANIFEST_SUFFIX} in {directory}")
        return
    click.echo(
        f"{'NAME':<16} {'VERSION':<9} {'HOOKS':<24} {'PHASE':<7} {'PRIO':>5} {'FAIL':<6} DIGEST"
    )
    for r in rows:
        if "version" not in r:
            click.echo(f"{r['name']:<16} invalid: {r['error']}")
            continue
        digest = "ok" if r["digest_ok"] else "MISMATCH"
        click.echo(
            f"{r['name']:<16} {r['version']:<9} {','.join(r['hooks']):<24} {r['phase']!s:<7} "
            f"{r['priority']:>5} {r['fail']:<6} {digest}"
        )
        click.echo(f"  limits: {_describe_limits(r['limits'])}")
        click.echo(f"  grants: {_describe_grants(r['grants'])}")
        if not r["digest_ok"]:
            click.echo(f"  {r['error']}")


@plugins.command("test")
@click.argument("name")
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_DIR_OPTION
@click.option("--response", "response_text", help="Also run on_response on this text.")
def test_plugin(name: str, request_file: Path, directory: Path, response_text: str | None) -> None:
    """Run plugin NAME's on_request on REQUEST_FILE (JSON) and print the verdict and timing."""
    manifest_path = directory / f"{name}{MANIFEST_SUFFIX}"
    if not manifest_path.is_file():
        raise click.ClickException(
            f"no plugin {name!r} in {directory} (expected {manifest_path}); see `plugins list`"
        )
    try:
        body = json.loads(request_file.read_text())
    except ValueError as exc:
        raise click.ClickException(f"{request_file} is not JSON ({exc}); fix the file") from None
    if not isinstance(body, dict):
        raise click.ClickException(f"{request_file} must hold a JSON object with messages")
    try:
        started = time.perf_counter()
        chain = PluginChain([load_plugin(load_manifest(manifest_path))])
        load_ms = (time.perf_counter() - started) * 1e3
    except PluginError as exc:
        raise click.ClickException(str(exc)) from None
    out: dict[str, Any] = {"plugin": name, "load_ms": round(load_ms, 2)}
    if "on_request" in chain.plugins[0].manifest.hooks:
        result = chain.on_request(body)
        out["on_request"] = {
            "action": result.trace[0].action if result.trace else "continue",
            "rejected": result.rejected,
            "status": result.status,
            "message": result.message,
            "route_target": result.route_target,
            "model": result.model,
            "request": result.request if result.modified else None,
            "error": result.trace[0].error if result.trace else None,
            "elapsed_us": round(sum(o.elapsed_us for o in result.trace), 1),
        }
    if response_text is not None:
        if "on_response" not in chain.plugins[0].manifest.hooks:
            raise click.ClickException(f"plugin {name} has no on_response hook; drop --response")
        res = chain.on_response(response_text)
        out["on_response"] = {
            "action": res.trace[0].action if res.trace else "continue",
            "rejected": res.rejected,
            "status": res.status,
            "message": res.message,
            "text": res.text,
            "error": res.trace[0].error if res.trace else None,
            "elapsed_us": round(sum(o.elapsed_us for o in res.trace), 1),
        }
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))
