"""``shared.settings_files``: one schema from flags, ``AGL_*`` env vars and a TOML file.

A small schema of its own (``DemoSettings``, prefix ``AGL_DEMO_``) keeps these tests apart
from the edge's and the hub's fields.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from shared.errors import ConfigError
from shared.settings_files import (
    TomlFileSettings,
    load_from,
    setting_source,
    settings_toml,
    unknown_env_vars,
)

PREFIX = "AGL_DEMO_"


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rps: int = Field(10, ge=1)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight: float = Field(1.0, gt=0)


class DemoSettings(TomlFileSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )
    port: int = Field(8080, ge=1, le=65535)
    host: str = "127.0.0.1"
    token: str | None = None
    limits: Limits = Field(default_factory=Limits)
    routes: list[Route] = Field(default_factory=list)


@pytest.fixture(autouse=True)
def no_demo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)


def load(config: Path | None = None, **overrides: object) -> DemoSettings:
    return load_from(DemoSettings, config, dict(overrides), env_prefix=PREFIX)


def test_overrides_beat_env_beat_file_beat_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "demo.toml"
    config.write_text('port = 1000\nhost = "file"\n[limits]\nrps = 3\n')
    monkeypatch.setenv("AGL_DEMO_PORT", "2000")
    monkeypatch.setenv("AGL_DEMO_LIMITS__RPS", "4")
    settings = load(config, port=3000, host=None)  # None: a flag not passed
    assert (settings.port, settings.host, settings.limits.rps) == (3000, "file", 4)
    assert load(config).port == 2000
    monkeypatch.delenv("AGL_DEMO_PORT")
    assert load(config).port == 1000
    assert load().port == 8080


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match=f"config file {broken} is not valid TOML"):
        load(broken)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"port = \xff\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load(binary)


def test_errors_name_the_field_the_value_and_every_place_to_set_it(tmp_path: Path) -> None:
    config = tmp_path / "demo.toml"
    config.write_text('port = 70000\n[limits]\nrps = 0\n[[routes]]\nname = "a"\nweight = -1\n')
    with pytest.raises(ConfigError) as info:
        load(config)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid settings:"
    text = str(info.value)
    assert "port: Input should be less than or equal to 65535 (got 70000)" in text
    assert "AGL_DEMO_PORT" in text and "`port` in the config file" in text
    assert "limits.rps" in text and "[limits] table of the config file" in text
    assert "routes.0.weight" in text and "[[routes]] #1 of the config file" in text
    assert "--port" not in text  # DemoSettings has no CLI: no flag is named


def test_unknown_keys_suggest_the_close_one_or_list_the_valid_ones(tmp_path: Path) -> None:
    config = tmp_path / "demo.toml"
    config.write_text("prot = 1\n[limits]\nzzz = 1\n")
    with pytest.raises(ConfigError) as info:
        load(config)
    text = str(info.value)
    assert "prot: unknown setting; did you mean `port`?" in text
    assert "limits.zzz: unknown setting; valid keys here: rps" in text


def test_a_list_set_from_the_environment_must_be_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGL_DEMO_ROUTES", '[{"name": "a", "weight": 2}]')
    assert load().routes == [Route(name="a", weight=2)]
    monkeypatch.setenv("AGL_DEMO_ROUTES", "a,b")
    with pytest.raises(ConfigError) as info:
        load()
    assert "environment variable AGL_DEMO_ROUTES is not valid JSON" in str(info.value)


def test_unknown_env_vars_are_found_with_a_suggestion_and_others_are_left_alone() -> None:
    environ = {
        "AGL_DEMO_PORT": "1",
        "AGL_DEMO_LIMITS__RPS": "2",
        "AGL_DEMO_ROUTES": "[]",
        "AGL_DEMO_PROT": "1",
        "AGL_DEMO_LIMITS__RSP": "2",
        "AGL_DEMO_ROUTES__NAME": "x",  # a list of tables is set whole, as JSON
        "AGL_DEMO_OTHER_THING": "theirs",
        "PATH": "/bin",
    }
    found = unknown_env_vars(
        DemoSettings, env_prefix=PREFIX, environ=environ, others=("AGL_DEMO_OTHER_",)
    )
    assert found == [
        "environment variable AGL_DEMO_LIMITS__RSP sets nothing and is ignored; "
        "did you mean AGL_DEMO_LIMITS__RPS?",
        "environment variable AGL_DEMO_PROT sets nothing and is ignored; "
        "did you mean AGL_DEMO_PORT?",
        "environment variable AGL_DEMO_ROUTES__NAME sets nothing and is ignored; "
        "did you mean AGL_DEMO_ROUTES?",
    ]


def test_settings_toml_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    settings = load(port=9, routes=[{"name": "a"}, {"name": "b", "weight": 0.5}])
    text = settings_toml(settings)
    assert "token" not in tomllib.loads(text)  # None has no TOML form: left out, loads as unset
    config = tmp_path / "again.toml"
    config.write_text(text)
    assert load(config) == settings


def test_setting_source_says_where_a_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "demo.toml"
    config.write_text("host = 'x'\n")

    def source(field: str, **overrides: object) -> str:
        return setting_source(
            field,
            overrides=overrides,
            config_file=config,
            env_prefix=PREFIX,
            flags={"port": "--listen-port"},
            environ={"AGL_DEMO_TOKEN": "t"},
        )

    assert source("port", port=1) == "flag --listen-port"
    assert source("host", host="y") == "flag --host"
    assert source("token") == "env AGL_DEMO_TOKEN"
    assert source("host") == f"`host` in {config}"
    assert source("port") == "the default"
