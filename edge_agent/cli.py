"""``edge-agent``: run the local OpenAI-compatible endpoint and inspect its config."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import uvicorn

from edge_agent import __version__
from edge_agent.api.http_protocol import bounded_http_protocol
from edge_agent.calibrate_cli import calibrate_command
from edge_agent.plugins_cli import plugins
from edge_agent.settings import EdgeSettings, load_settings
from shared.cli_options import settings_options
from shared.errors import AglError

CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (keys as in `edge-agent config show`).",
)


SETTINGS_FLAGS = settings_options(
    EdgeSettings,
    fields=[
        "host",
        "port",
        "model_path",
        "model_id",
        "n_ctx",
        "n_threads",
        "n_gpu_layers",
        "max_queue",
        "request_timeout_s",
        "log_level",
    ],
    flag_names={"request_timeout_s": "--request-timeout"},
)


def _settings_options(fn: Any) -> Any:
    """``--config`` plus one flag per settings field, generated from :class:`EdgeSettings`."""
    return CONFIG_OPTION(SETTINGS_FLAGS(fn))


def _load(config_file: Path | None, overrides: dict[str, Any]) -> EdgeSettings:
    try:
        return load_settings(config_file, **overrides)
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edge-agent")
def main() -> None:
    """Open-AutoGLM edge agent: an OpenAI-compatible LLM endpoint on this device.

    \b
    Quick start (bundled SmolLM2 model, http://127.0.0.1:8080/v1):
      edge-agent run
      curl http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}'

    Settings come from flags, then AGL_* environment variables (AGL_PORT=9000), then
    the --config TOML file, then defaults. `edge-agent config show` prints the result.
    """


@main.command()
@_settings_options
def run(config_file: Path | None, **overrides: Any) -> None:
    """Serve the OpenAI-compatible API until SIGTERM/Ctrl-C (in-flight requests drain first).

    \b
    Endpoints: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models,
               /v1/classify (ONNX), /healthz, /readyz, /metrics
    """
    from edge_agent.api.app import create_app
    from edge_agent.models import ModelRegistry, plan_models

    settings = _load(config_file, overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        specs = plan_models(settings)
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        sock = socket.create_server((settings.host, settings.port), reuse_port=False)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; pick another --port"
        ) from exc
    port = sock.getsockname()[1]
    app = create_app(settings, ModelRegistry(specs, settings))
    config = uvicorn.Config(
        app,
        http=bounded_http_protocol(settings.max_header_bytes),
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        access_log=settings.log_level == "debug",
    )
    click.echo(
        f"edge-agent {__version__}: serving {specs[0].id} on http://{settings.host}:{port}/v1",
        err=True,
    )
    DrainingServer(config).run(sockets=[sock])


class DrainingServer(uvicorn.Server):
    """uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; after a
    clean drain we exit 0 instead, so supervisors see an orderly stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@_settings_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML-like lines.")
def show(config_file: Path | None, as_json: bool, **overrides: Any) -> None:
    """Print the settings after flags, AGL_* env vars and the config file are merged."""
    settings = _load(config_file, overrides)
    data = settings.model_dump(mode="json")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key} = {json.dumps(value)}")


main.add_command(calibrate_command)
main.add_command(plugins)
