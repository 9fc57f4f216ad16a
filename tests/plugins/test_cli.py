"""``plugins list`` and ``plugins test`` against the real samples."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edge_agent.plugins_cli import plugins
from tests.plugins.conftest import request


def test_list_shows_samples_in_order_with_digest_check(samples_dir: Path) -> None:
    out = CliRunner().invoke(plugins, ["list", "--dir", str(samples_dir), "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["name"] for r in rows] == ["prompt_guard", "pii_redact", "topic_router"]
    assert all(r["digest_ok"] for r in rows)
    (samples_dir / "pii_redact.wasm").write_bytes(b"\0asm tampered")
    table = CliRunner().invoke(plugins, ["list", "--dir", str(samples_dir)])
    assert table.exit_code == 0 and "MISMATCH" in table.output


def test_test_prints_verdict_and_timing(samples_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "request.json"
    body.write_text(json.dumps(request("mail a@b.com")))
    out = CliRunner().invoke(
        plugins,
        ["test", "pii_redact", str(body), "--dir", str(samples_dir), "--response", "x@y.org"],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["on_request"]["route_target"] == "local_only"
    assert doc["on_request"]["request"]["messages"][0]["content"] == "mail [EMAIL]"
    assert doc["on_response"]["text"] == "[EMAIL]"
    assert doc["on_request"]["elapsed_us"] > 0


def test_test_unknown_plugin_says_what_to_do(samples_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "request.json"
    body.write_text("{}")
    out = CliRunner().invoke(plugins, ["test", "nope", str(body), "--dir", str(samples_dir)])
    assert out.exit_code != 0 and "plugins list" in out.output


def test_list_shows_grants_and_limits(samples_dir: Path) -> None:
    manifest = samples_dir / "topic_router.plugin.toml"
    manifest.write_text(
        manifest.read_text()
        + '\n[grants]\nwasi = true\nallowed_hosts = ["*"]\n'
        + 'allowed_paths = { "/srv/ro" = "/data", "rw:/srv/rw" = "/out" }\n'
    )
    out = CliRunner().invoke(plugins, ["list", "--dir", str(samples_dir), "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    pii = rows["pii_redact"]
    assert pii["limits"] == {
        "timeout_ms": 50,
        "max_pages": 16,
        "memory_bytes": 16 * 65536,
        "recycle_pages": None,
        "max_output_bytes": 1024 * 1024,
        "stream_window_chars": pii["limits"]["stream_window_chars"],
    }
    assert pii["limits"]["stream_window_chars"] > 0
    assert pii["grants"] == {"wasi": False, "allowed_hosts": [], "allowed_paths": []}
    assert rows["topic_router"]["grants"] == {
        "wasi": True,
        "allowed_hosts": ["*"],
        "allowed_paths": [
            {"host": "/srv/ro", "guest": "/data", "mode": "ro"},
            {"host": "/srv/rw", "guest": "/out", "mode": "rw"},
        ],
    }
    table = CliRunner().invoke(plugins, ["list", "--dir", str(samples_dir)])
    assert table.exit_code == 0, table.output
    assert "grants: none" in table.output  # the samples need nothing
    assert "/srv/ro -> /data (read-only)" in table.output
    assert "/srv/rw -> /out (read-write)" in table.output
    assert "any host" in table.output
    assert "timeout 50 ms" in table.output and "16 pages (1 MiB)" in table.output
