"""``hubctl``: run the cloud hub (and, later, manage the fleet)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import click

from cloud_hub import __version__
from cloud_hub.checks import check_hub
from cloud_hub.errors import HubError
from cloud_hub.settings import HubSettings, load_hub_settings, unknown_env_warnings
from shared.cli_options import settings_options
from shared.errors import AglError
from shared.settings_files import settings_toml


def _load(config_file: Path | None, overrides: dict[str, Any]) -> HubSettings:
    try:
        return load_hub_settings(config_file, **overrides)
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="hubctl")
def main() -> None:
    """Open-AutoGLM cloud hub: serves big models to edge devices over NATS.

    \b
    Quick start (a nats-server on localhost, one model from hub.toml):
      hubctl serve --nats-url nats://127.0.0.1:4222 --config hub.toml

    Settings come from flags, then AGL_HUB_* environment variables
    (AGL_HUB_NATS_URL=nats://10.0.0.5:4222), then the --config TOML file, then defaults.
    """


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file with [[models]] tables (see `hubctl serve --help`).",
)
SETTINGS_FLAGS = settings_options(
    HubSettings,
    fields=[
        "nats_url",
        "concurrency",
        "drain_timeout_s",
        "request_timeout_s",
        "log_level",
        "metrics_port",
        "metrics_host",
    ],
    flag_names={"drain_timeout_s": "--drain-timeout", "request_timeout_s": "--request-timeout"},
)


def _warn_unknown_env() -> None:
    for line in unknown_env_warnings():
        click.echo(f"warning: {line}", err=True)


@main.command()
@CONFIG_OPTION
@SETTINGS_FLAGS
@click.option(
    "--check",
    is_flag=True,
    help="Dry run: load and validate the settings and the model files, print what would be "
    "served, then exit (0 when it can start).",
)
def serve(config_file: Path | None, check: bool, **overrides: Any) -> None:
    """Serve the configured models on agl.v1.infer.<model> until SIGTERM/Ctrl-C.

    \b
    Start as many `hubctl serve` processes as you like: they share the load through the
    NATS queue group `hub`. Find them with `nats micro ls` ($SRV.PING agl-hub).
    SIGTERM or Ctrl-C stops it in any state, also while NATS is unreachable (exit code 0).

    \b
    Example hub.toml:
      [[models]]
      name = "qwen2.5-7b"          # edges send model="qwen2.5-7b"
      backend = "gguf"             # gguf | onnx | openai | echo (echo = test stand-in)
      path = "/models/qwen2.5-7b-instruct-q4_k_m.gguf"
      n_gpu_layers = -1            # all layers on the GPU
      [[models]]
      name = "glm-4-plus"
      backend = "openai"
      base_url = "https://open.bigmodel.cn/api/paas/v4"
      api_key_env = "ZHIPU_API_KEY" # the key itself stays in the environment
      [telemetry]                   # traces, metrics, logs (see deploy/otel-collector.yaml)
      endpoint = "http://otel-collector:4318"
      traces_sample_ratio = 0.1
      loki_url = "http://loki:3100/loki/api/v1/push"
    """
    from cloud_hub.serving import serve as run_service

    _warn_unknown_env()
    settings = _load(config_file, overrides)
    if check:
        _dry_run(settings)
        return
    if not settings.models:
        raise click.ClickException(
            "no models configured; add a [[models]] table to the --config file "
            "(see `hubctl serve --help`)"
        )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_service(settings))
    except (HubError, AglError) as exc:
        raise click.ClickException(str(exc)) from exc


def _dry_run(settings: HubSettings) -> None:
    problems, notes = check_hub(settings)
    for note in notes:
        click.echo(f"ok: {note}")
    if problems:
        raise click.ClickException("the hub would not start:\n  " + "\n  ".join(problems))
    click.echo(
        f"ok: settings are valid; would serve {len(settings.models)} model(s) on NATS at "
        f"{settings.shown_nats_url}"
    )


@main.group()
def config() -> None:
    """Inspect the hub's effective configuration."""


@config.command("show")
@CONFIG_OPTION
@SETTINGS_FLAGS
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(config_file: Path | None, as_json: bool, **overrides: Any) -> None:
    """Print the settings after flags, AGL_HUB_* env vars and the config file are merged.

    The TOML output is a valid hub.toml: unset values are left out.
    """
    _warn_unknown_env()
    settings = _load(config_file, overrides)
    if as_json:
        click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))
    else:
        click.echo(settings_toml(settings), nl=False)


if __name__ == "__main__":
    main()
