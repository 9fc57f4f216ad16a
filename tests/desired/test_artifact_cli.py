"""``hubctl plugins push|list`` and ``hubctl models push|list`` against a real JetStream."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from cloud_hub.cli import main

from .conftest import RestartableNats

WASM = Path(__file__).resolve().parents[2] / "wasm_plugins"


def test_push_then_list_plugins_and_models(js_nats: RestartableNats, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--nats-url", js_nats.url, "--dir", str(tmp_path / "auth")]
    out = runner.invoke(
        main,
        [
            "plugins",
            "push",
            str(WASM / "pii_redact.wasm"),
            "--manifest",
            str(WASM / "pii_redact.plugin.toml"),
            *common,
        ],
    )
    sha = hashlib.sha256((WASM / "pii_redact.wasm").read_bytes()).hexdigest()
    assert out.exit_code == 0, out.output
    assert f"pii_redact@{sha}" in out.output
    model = tmp_path / "tiny.onnx"
    model.write_bytes(b"\x08\x07" * 300_000)
    out = runner.invoke(main, ["models", "push", str(model), "--id", "tiny", *common])
    assert out.exit_code == 0, out.output
    assert "in 2 chunks" in out.output  # 600 kB in 512 KiB chunks
    listed = runner.invoke(main, ["plugins", "list", "--json", *common])
    rows = json.loads(listed.output)
    assert [(r["name"], r["sha256"], r["version"]) for r in rows] == [("pii_redact", sha, "1.0.0")]
    listed = runner.invoke(main, ["models", "list", *common])
    assert (
        "tiny" in listed.output
        and hashlib.sha256(model.read_bytes()).hexdigest()[:16] in listed.output
    )


def test_bad_push_input_says_what_to_fix(js_nats: RestartableNats, tmp_path: Path) -> None:
    runner = CliRunner()
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"x")
    out = runner.invoke(
        main,
        [
            "models",
            "push",
            str(blob),
            "--id",
            "m",
            "--nats-url",
            js_nats.url,
            "--dir",
            str(tmp_path),
        ],
    )
    assert out.exit_code == 2 and "a model is a .gguf or .onnx file" in out.output
    out = runner.invoke(
        main,
        [
            "plugins",
            "push",
            str(WASM / "pii_redact.wasm"),
            "--manifest",
            str(WASM / "pii_redact.plugin.toml"),
            "--nats-url",
            js_nats.url,
        ],
    )
    assert out.exit_code == 1 and "no signing key: pass --dir" in out.output
    out = runner.invoke(main, ["plugins", "list", "--nats-url", js_nats.url])
    assert out.exit_code == 0 and "no plugins stored" in out.output
