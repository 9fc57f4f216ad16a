"""Configuration errors that help, config show that loads back, and the CLIs' small promises."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_hub.cli import main as hubctl
from cloud_hub.settings import HubSettings, load_hub_settings
from edge_agent.cli import main as edge_agent
from edge_agent.settings import EdgeSettings, load_settings
from openautoglm.cli import main as open_autoglm
from shared.errors import ConfigError
from shared.settings_files import setting_source, unknown_env_vars


@pytest.fixture(autouse=True)
def _no_agl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AGL_"):
            monkeypatch.delenv(name)


def _error(path: Path, text: str) -> str:
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_an_unknown_key_suggests_the_real_one_and_where_to_set_it(tmp_path: Path) -> None:
    message = _error(tmp_path / "edge.toml", "n_thread = 3\n")
    assert "n_thread: unknown setting; did you mean `n_threads`?" in message
    assert "flag --n-threads, env AGL_N_THREADS, or `n_threads` in the config file" in message
    assert "--n-thread," not in message


def test_errors_in_tables_name_no_flag_that_does_not_exist(tmp_path: Path) -> None:
    message = _error(tmp_path / "edge.toml", "[router]\ndefault_cloud_mdl = 'x'\n")
    assert "did you mean `default_cloud_model`?" in message
    assert "env AGL_ROUTER__DEFAULT_CLOUD_MODEL" in message
    assert "the [router] table of the config file" in message
    assert "--router" not in message
    message = _error(tmp_path / "edge.toml", "[router.cascade]\nfirst_k = 0\n")
    assert "--router" not in message and "AGL_ROUTER__CASCADE__FIRST_K" in message


def test_errors_in_lists_of_tables_name_the_table_entry(tmp_path: Path) -> None:
    message = _error(
        tmp_path / "edge.toml",
        '[[extra_models]]\nid = "x"\npath = "/x.onnx"\ntask = "classify"\nsha256 = "abc"\n',
    )
    assert "extra_models.0.sha256: " in message
    assert "`sha256` in [[extra_models]] #1 of the config file" in message
    assert "--extra-models" not in message


def test_a_field_without_a_flag_is_named_by_env_and_file_only() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, max_body_bytes=1)
    assert "[env AGL_MAX_BODY_BYTES, or `max_body_bytes` in the config file]" in str(info.value)


def test_hub_errors_suggest_too(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text("concurency = 3\n")
    with pytest.raises(ConfigError, match=r"did you mean `concurrency`\?.*--concurrency"):
        load_hub_settings(cfg)


def test_unknown_env_vars_are_reported_with_a_suggestion() -> None:
    env = {
        "AGL_N_THREAD": "3",  # a typo
        "AGL_N_THREADS": "2",
        "AGL_ROUTER__CASCADE__FIRS_K": "3",
        "AGL_HUB__NATS_URL": "nats://x:4222",  # the edge's [hub] table
        "AGL_HUB_NATS_URL": "nats://x:4222",  # the hub's own
        "AGL_HUB_NATS_ULR": "nats://x:4222",  # the hub's, misspelt
        "PATH": "/bin",
    }
    edge = unknown_env_vars(EdgeSettings, env_prefix="AGL_", environ=env, others=("AGL_HUB_",))
    assert edge == [
        "environment variable AGL_N_THREAD sets nothing and is ignored; did you mean AGL_N_THREADS?",
        "environment variable AGL_ROUTER__CASCADE__FIRS_K sets nothing and is ignored; "
        "did you mean AGL_ROUTER__CASCADE__FIRST_K?",
    ]
    hub = unknown_env_vars(HubSettings, env_prefix="AGL_HUB_", environ=env, others=("AGL_HUB__",))
    assert hub == [
        "environment variable AGL_HUB_NATS_ULR sets nothing and is ignored; "
        "did you mean AGL_HUB_NATS_URL?"
    ]


def test_config_show_warns_about_unknown_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGL_N_THREAD", "3")
    result = CliRunner().invoke(edge_agent, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "warning: environment variable AGL_N_THREAD sets nothing" in result.stderr


def test_edge_config_show_prints_toml_that_loads_back(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        "n_threads = 3\n"
        '[hub]\nnats_url = "nats://hub:4222"\n'
        '[router]\ncloud_aliases = { "big" = "glm-4-plus" }\n'
        '[[router.rules]]\nname = "long"\nmin_prompt_tokens = 100\ntier = "cloud"\n'
        '[[extra_models]]\nid = "digits"\npath = "/m/digits.onnx"\ntask = "classify"\n'
        '[telemetry]\nheaders = { "x-token" = "t" }\n'
    )
    result = CliRunner().invoke(edge_agent, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "null" not in result.stdout and "{\n" not in result.stdout
    tomllib.loads(result.stdout)  # valid TOML
    shown = tmp_path / "shown.toml"
    shown.write_text(result.stdout)
    assert load_settings(shown) == load_settings(cfg)


def test_hub_config_show_prints_toml_that_loads_back(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[[models]]\nname = "echo-test"\nbackend = "echo"\n')
    result = CliRunner().invoke(hubctl, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    shown = tmp_path / "shown.toml"
    shown.write_text(result.stdout)
    assert load_hub_settings(shown) == load_hub_settings(cfg)


def test_hub_check_validates_model_files_without_serving(tmp_path: Path) -> None:
    good = tmp_path / "hub.toml"
    good.write_text('[[models]]\nname = "small"\nbackend = "gguf"\n')  # the bundled GGUF
    result = CliRunner().invoke(hubctl, ["serve", "--check", "--config", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok: settings are valid; would serve 1 model(s)" in result.output
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[[models]]\nname = "fake"\nbackend = "gguf"\npath = "{fake}"\n'
        f'[[models]]\nname = "gone"\nbackend = "onnx"\npath = "{tmp_path / "gone.onnx"}"\n'
        '[[models]]\nname = "up"\nbackend = "openai"\nbase_url = "http://x/v1"\n'
        'api_key_env = "AGL_TEST_UNSET_KEY"\n'
    )
    result = CliRunner().invoke(hubctl, ["serve", "--check", "--config", str(bad)])
    assert result.exit_code == 1
    assert "model 'fake': " in result.output and "is not a GGUF file" in result.output
    assert "model 'gone': file" in result.output and "does not exist" in result.output
    assert "AGL_TEST_UNSET_KEY is empty" in result.output


def test_hub_metrics_bind_loopback_unless_told(tmp_path: Path) -> None:
    assert load_hub_settings(None).metrics_host == "127.0.0.1"
    result = CliRunner().invoke(hubctl, ["config", "show", "--metrics-host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert 'metrics_host = "0.0.0.0"' in result.stdout


@pytest.mark.parametrize("cli", [edge_agent, hubctl, open_autoglm])
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_every_cli_tells_its_version(cli: object, flag: str) -> None:
    result = CliRunner().invoke(cli, [flag])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert "version 0.1.0" in result.output


def test_plugins_dir_has_a_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(edge_agent, ["config", "show", "--plugins-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f'plugins_dir = "{tmp_path}"' in result.stdout


def test_models_pull_exists_and_says_why_it_cannot_pull_yet() -> None:
    assert CliRunner().invoke(edge_agent, ["models", "pull", "--help"]).exit_code == 0
    result = CliRunner().invoke(edge_agent, ["models", "pull", "qwen2.5-0.5b"])
    assert result.exit_code == 1
    assert "model store" in result.output and "desired state" in result.output
    assert "--model-path" in result.output


def test_setting_source_follows_the_priority(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text('model_path = "/m.gguf"\n')

    def source(overrides: dict[str, object], environ: dict[str, str]) -> str:
        return setting_source(
            "model_path",
            overrides=overrides,
            config_file=cfg,
            env_prefix="AGL_",
            environ=environ,
        )

    assert source({"model_path": "/f.gguf"}, {"AGL_MODEL_PATH": "/e"}) == "flag --model-path"
    assert source({}, {"AGL_MODEL_PATH": "/e"}) == "env AGL_MODEL_PATH"
    assert source({}, {}) == f"`model_path` in {cfg}"
    cfg.write_text("")
    assert source({}, {}) == "the default"
