"""``hubctl serve`` and ``hubctl config show``: run the hub, inspect its settings."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import click

from cloud_hub.checks import check_hub
from cloud_hub.cli.root import load_settings_or_exit as _load
from cloud_hub.errors import HubError
from cloud_hub.settings import HubSettings, unknown_env_warnings
from shared.cli_options import settings_options
from shared.errors import AglError
from shared.settings_files import settings_toml

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
        "credentials",
    ],
    flag_names={"drain_timeout_s": "--drain-timeout", "request_timeout_s": "--request-timeout"},
)


def _warn_unknown_env() -> None:
    for line in unknown_env_warnings():
        click.echo(f"warning: {line}", err=True)


@click.command()
@CONFIG_OPTION
@SETTINGS_FLAGS
@click.option(
    "--check",
    is_flag=True,
    help="Dry run: load and validate the settings and the model files, print what would be "
    "served, then exit (0 when it can start).",
)
def serve(config_file: Path | None, check: bool, **overrides: Any) -> None:
    """Serve the configured models on agl.v1.dev.*.infer.<model> until SIGTERM/Ctrl-C.

    \b
    Start as many `hubctl serve` processes as you like: they share the load through the
    NATS queue group `hub`. Find them with `nats micro ls` ($SRV.PING agl-hub).
    Heartbeats on agl.v1.dev.*.hb feed the device registry (KV agl_devices).
    With fleet identity on, set credentials = "auth/hub.creds" (`hubctl auth init`).
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


@click.group()
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
