"""CLI flags are generated from the settings schemas, so their names, help and defaults cannot drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field

from cloud_hub.cli import main as hubctl
from cloud_hub.settings import HubSettings
from edge_agent.cli import main as edge_agent
from edge_agent.settings import EdgeSettings
from shared.cli_options import CLI_DEFAULT_KEY, SettingsOption, settings_options

EDGE_FLAGS = [
    "--host",
    "--port",
    "--grpc-port",
    "--grpc-max-message-bytes",
    "--model-path",
    "--model-id",
    "--n-ctx",
    "--n-threads",
    "--n-gpu-layers",
    "--parallel",
    "--max-queue",
    "--request-timeout",
    "--log-level",
    "--plugins-dir",
    "--keep-running-on-load-error",
    "--insecure-no-auth",
]
HUB_FLAGS = [
    "--nats-url",
    "--concurrency",
    "--drain-timeout",
    "--request-timeout",
    "--log-level",
    "--metrics-port",
    "--metrics-host",
    "--credentials",
]
# (CLI, argv to the command, its schema, the flags it must offer)
COMMANDS = [
    pytest.param(edge_agent, ["run"], EdgeSettings, EDGE_FLAGS, id="edge-agent run"),
    pytest.param(
        edge_agent, ["config", "show"], EdgeSettings, EDGE_FLAGS, id="edge-agent config show"
    ),
    pytest.param(hubctl, ["serve"], HubSettings, HUB_FLAGS, id="hubctl serve"),
    pytest.param(hubctl, ["config", "show"], HubSettings, HUB_FLAGS, id="hubctl config show"),
]


def _commands(group: click.Group) -> Iterator[click.Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command)


def _generated(command: click.Command) -> list[SettingsOption]:
    return [p for p in command.params if isinstance(p, SettingsOption)]


def _help(cli: click.Group, argv: list[str]) -> str:
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click wraps long help lines


def _schema_default(cls: type[BaseModel], name: str) -> Any:
    field = cls.model_fields[name]
    if isinstance(field.json_schema_extra, dict) and CLI_DEFAULT_KEY in field.json_schema_extra:
        return field.json_schema_extra[CLI_DEFAULT_KEY]
    return field.get_default(call_default_factory=True)


@pytest.mark.parametrize(("cli", "argv", "cls", "flags"), COMMANDS)
def test_every_flag_shows_the_schema_default_and_description(
    cli: click.Group, argv: list[str], cls: type[BaseModel], flags: list[str]
) -> None:
    text = _help(cli, argv)
    command: click.Command = cli
    for name in argv:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    options = _generated(command)
    assert [o.opts[0] for o in options] == flags
    for option in options:
        description = cls.model_fields[option.field_name].description
        assert description is not None
        anchor = f"{' '.join(description.split())} [default: "
        assert anchor in text, f"{option.opts[0]}: {anchor!r} not in --help"
        shown = text.split(anchor, 1)[1].split("]", 1)[0]
        expected = _schema_default(cls, option.field_name)
        assert expected is not None, f"{option.field_name}: give it a cli_default"
        if isinstance(expected, bool):  # a --x/--no-x pair shows the default flag
            assert shown == (option.opts[0] if expected else option.secondary_opts[0])
        elif isinstance(expected, int | float):
            assert type(expected)(shown) == expected, option.opts[0]
        else:
            assert shown == str(expected), option.opts[0]
    assert "[default: None]" not in text


def test_machine_dependent_defaults_are_shown_in_words() -> None:
    text = _help(edge_agent, ["run"])
    assert "CPU threads for generation. [default: all cores]" in text
    assert "[default: the bundled SmolLM2-135M-Instruct Q4_1]" in text


def test_every_generated_flag_sets_a_real_settings_field() -> None:
    seen = 0
    for cli, cls in ((edge_agent, EdgeSettings), (hubctl, HubSettings)):
        for command in _commands(cli):
            for option in _generated(command):
                assert option.field_name in cls.model_fields, (command.name, option.opts)
                assert option.name == option.field_name  # the override key load_from gets
                assert option.default is None  # unset flags must not beat env or TOML
                seen += 1
    assert seen == 2 * len(EDGE_FLAGS) + 2 * len(HUB_FLAGS)


def test_a_passed_flag_beats_env_and_toml_and_unset_flags_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text('port = 7000\nrequest_timeout_s = 5.0\nlog_level = "error"\n')
    monkeypatch.setenv("AGL_PORT", "7100")
    monkeypatch.setenv("AGL_LOG_LEVEL", "warning")

    def show(*flags: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            edge_agent, ["config", "show", "--json", "--config", str(cfg), *flags]
        )
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.output)
        return data

    unset = show()
    assert (unset["port"], unset["request_timeout_s"], unset["log_level"]) == (7100, 5.0, "warning")
    flagged = show("--port", "7200", "--request-timeout", "9", "--log-level", "debug")
    assert (flagged["port"], flagged["request_timeout_s"], flagged["log_level"]) == (
        7200,
        9.0,
        "debug",
    )


def test_an_unknown_choice_is_a_click_error_listing_the_choices() -> None:
    result = CliRunner().invoke(edge_agent, ["config", "show", "--log-level", "loud"])
    assert result.exit_code == 2
    assert "Invalid value for '--log-level'" in result.output
    assert "'loud' is not one of 'debug', 'info', 'warning', 'error'" in result.output


class _Demo(BaseModel):
    verbose: bool = Field(True, description="Talk more.")
    workers: int = Field(default_factory=lambda: 4, description="Worker count.")
    mode: Literal["fast", "safe"] = Field("safe", description="How to run.")
    out: Path | None = Field(None, description="Where to write.")
    tags: list[str] = Field(default_factory=list, description="Labels.")
    bare: int = 1


def _demo_command(**kwargs: Any) -> click.Command:
    @click.command()
    @settings_options(_Demo, **kwargs)
    def demo(**overrides: Any) -> None:
        click.echo(json.dumps({k: v for k, v in overrides.items() if v is not None}, default=str))

    return demo


def test_bool_fields_become_a_flag_pair_that_stays_unset_unless_passed() -> None:
    demo = _demo_command(fields=["verbose", "workers", "mode", "out"])

    def run(*argv: str) -> dict[str, Any]:
        result = CliRunner().invoke(demo, list(argv))
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.output)
        return data

    assert run() == {}
    assert run("--verbose") == {"verbose": True}
    assert run("--no-verbose", "--workers", "2", "--out", "x.txt") == {
        "verbose": False,
        "workers": 2,
        "out": "x.txt",
    }
    text = " ".join(CliRunner().invoke(demo, ["--help"]).output.split())
    assert "Talk more. [default: --verbose]" in text
    assert "Worker count. [default: 4]" in text  # from default_factory
    assert "How to run. [default: safe]" in text
    assert "Where to write." in text and "[default: None]" not in text


def test_flag_names_and_shown_defaults_can_be_overridden() -> None:
    demo = _demo_command(
        fields=["workers"], flag_names={"workers": "--jobs"}, shown_defaults={"workers": "per core"}
    )
    text = " ".join(CliRunner().invoke(demo, ["--help"]).output.split())
    assert "--jobs INTEGER Worker count. [default: per core]" in text
    assert json.loads(CliRunner().invoke(demo, ["--jobs", "3"]).output) == {"workers": 3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": ["wrokers"]}, r"_Demo\.wrokers is not a settings field"),
        ({"fields": ["bare"]}, r"_Demo\.bare has no description="),
        ({"fields": ["tags"]}, r"_Demo\.tags: list\[str\] has no flag form"),
        ({"fields": ["mode"], "flag_names": {"workers": "--jobs"}}, r"not in `fields`"),
        ({"fields": ["mode"], "flag_names": {"mode": "mode"}}, r"must start with --"),
    ],
)
def test_schema_mistakes_fail_at_import_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        settings_options(_Demo, **kwargs)
