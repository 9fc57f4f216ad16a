"""``cloud_hub.settings`` through ``hubctl`` (its click entry point): bad hub.toml, bad
``AGL_HUB_*`` values, priorities, and what each error tells the operator to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_hub.cli import main as hubctl
from cloud_hub.settings import HubSettings, load_hub_settings, unknown_env_warnings
from shared.errors import ConfigError

ECHO_TOML = '[[models]]\nname = "echo-test"\nbackend = "echo"\n'


@pytest.fixture(autouse=True)
def no_agl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's AGL_* variables must not change these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("AGL_"):
            monkeypatch.delenv(name)


def check(
    tmp_path: Path, toml: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``hubctl serve --check --config hub.toml``: exit code and everything it printed."""
    config = tmp_path / "hub.toml"
    config.write_text(toml)
    result = CliRunner().invoke(
        hubctl, ["serve", "--check", "--config", str(config), *args], env=env
    )
    return result.exit_code, result.output


def test_a_good_file_passes_the_check_and_says_what_it_would_serve(tmp_path: Path) -> None:
    code, out = check(tmp_path, ECHO_TOML)
    assert code == 0, out
    assert "would serve 1 model(s) on NATS at nats://127.0.0.1:4222" in out


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("[[models]\nname = 1", ["is not valid TOML"]),
        (
            '[[models]]\nname = "m"\nbackend = "echo"\nbakend = 1\n',
            ["bakend", "did you mean `backend`?"],
        ),
        (
            '[[models]]\nname = "m"\nbackend = "vllm"\n',
            ["models.0.backend", "'gguf', 'onnx', 'openai' or 'echo'"],
        ),
        ('[[models]]\nname = "m"\nbackend = "onnx"\n', ["backend onnx needs `path`"]),
        ('[[models]]\nname = "m"\nbackend = "openai"\n', ["backend openai needs `base_url`"]),
        ('[[models]]\nname = "a.b"\nbackend = "echo"\n', ["models.0.name"]),
        (ECHO_TOML * 2, ["model names must be unique; repeated: echo-test"]),
        (
            "concurrency = 0\n" + ECHO_TOML,
            ["concurrency", "greater than or equal to 1", "--concurrency", "AGL_HUB_CONCURRENCY"],
        ),
        (
            'drain_timeout_s = "soon"\n' + ECHO_TOML,
            ["drain_timeout_s", "--drain-timeout", "AGL_HUB_DRAIN_TIMEOUT_S"],
        ),
        (
            "[telemetry]\ntraces_sample_ratio = 2\n" + ECHO_TOML,
            ["telemetry.traces_sample_ratio", "[telemetry] table"],
        ),
    ],
    ids=[
        "not-toml",
        "typo",
        "backend",
        "onnx-path",
        "openai-url",
        "subject-token",
        "dupes",
        "zero",
        "type",
        "table",
    ],
)
def test_a_bad_hub_toml_is_refused_naming_the_field_and_the_fix(
    tmp_path: Path, toml: str, needles: list[str]
) -> None:
    code, out = check(tmp_path, toml)
    assert code == 1, out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in out, (needle, out)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        hubctl, ["serve", "--check", "--config", str(tmp_path / "nope.toml")]
    )
    assert result.exit_code == 1
    assert f"config file {tmp_path / 'nope.toml'} does not exist" in result.output


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"AGL_HUB_CONCURRENCY": "many"}, ["concurrency", "valid integer", "AGL_HUB_CONCURRENCY"]),
        ({"AGL_HUB_DRAIN_TIMEOUT_S": "-1"}, ["drain_timeout_s", "greater than or equal to 0"]),
        ({"AGL_HUB_LOG_LEVEL": "loud"}, ["log_level", "'debug', 'info', 'warning' or 'error'"]),
        ({"AGL_HUB_MODELS": "not json"}, ["AGL_HUB_MODELS is not valid JSON"]),
        ({"AGL_HUB_TELEMETRY__TRACES_SAMPLE_RATIO": "-0.5"}, ["telemetry.traces_sample_ratio"]),
    ],
    ids=["int", "negative", "choice", "json-list", "nested"],
)
def test_bad_agl_hub_values_are_refused_naming_the_variable(
    tmp_path: Path, env: dict[str, str], needles: list[str]
) -> None:
    code, out = check(tmp_path, ECHO_TOML, env=env)
    assert code == 1, out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in out, (needle, out)


def test_an_unknown_agl_hub_variable_is_warned_about_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGL_HUB_CONCURRANCY", "8")
    monkeypatch.setenv("AGL_HUB__NATS_URL", "nats://edge-side:4222")  # the edge's [hub] table
    assert unknown_env_warnings() == [
        "environment variable AGL_HUB_CONCURRANCY sets nothing and is ignored; "
        "did you mean AGL_HUB_CONCURRENCY?"
    ]
    code, out = check(tmp_path, ECHO_TOML)
    assert code == 0 and "warning: environment variable AGL_HUB_CONCURRANCY" in out


def test_flags_beat_env_beat_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("concurrency = 2\ndrain_timeout_s = 5\nrequest_timeout_s = 7\n" + ECHO_TOML)
    monkeypatch.setenv("AGL_HUB_CONCURRENCY", "3")
    monkeypatch.setenv("AGL_HUB_DRAIN_TIMEOUT_S", "6")
    settings = load_hub_settings(config, concurrency=9)
    assert (settings.concurrency, settings.drain_timeout_s, settings.request_timeout_s) == (9, 6, 7)
    result = CliRunner().invoke(
        hubctl, ["config", "show", "--json", "--config", str(config), "--concurrency", "9"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["concurrency"], shown["drain_timeout_s"], shown["request_timeout_s"]) == (9, 6, 7)


def test_nats_url_lists_servers_and_hides_credentials() -> None:
    settings = HubSettings(nats_url="nats://hub:s3cret@a:4222, tls://token@b:4443 ,")
    assert settings.servers == ["nats://hub:s3cret@a:4222", "tls://token@b:4443"]
    assert settings.shown_nats_url == "nats://a:4222,tls://b:4443"
    assert "s3cret" not in settings.shown_nats_url


def test_load_errors_are_config_errors_not_tracebacks(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("concurrency = -1\n")
    with pytest.raises(ConfigError) as info:
        load_hub_settings(config)
    assert str(info.value).startswith("invalid settings:\n  concurrency:")


def test_serve_without_models_says_how_to_add_one(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("concurrency = 2\n")
    result = CliRunner().invoke(hubctl, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "no models configured; add a [[models]] table" in result.output
