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
from edge_agent.api.api_keys import bind_refusal
from edge_agent.api.http_protocol import bounded_http_protocol
from edge_agent.calibrate_cli import calibrate_command
from edge_agent.errors import EdgeError
from edge_agent.models import ModelRegistry
from edge_agent.ops_cli import models_group, ps, top
from edge_agent.plugins_cli import plugins
from edge_agent.settings import ENV_PREFIX, EdgeSettings, load_settings, unknown_env_warnings
from shared.cli_options import flags_for, settings_options
from shared.errors import AglError
from shared.settings_files import setting_source, settings_toml
from shared.telemetry.logs import UVICORN_LOG_CONFIG, JsonFormatter

log = logging.getLogger("edge_agent")

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
        "grpc_port",
        "grpc_max_message_bytes",
        "model_path",
        "model_id",
        "n_ctx",
        "n_threads",
        "n_gpu_layers",
        "parallel",
        "max_queue",
        "request_timeout_s",
        "log_level",
        "plugins_dir",
        "keep_running_on_load_error",
        "insecure_no_auth",
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
@click.version_option(__version__, "-V", "--version", prog_name="edge-agent")
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
@click.option(
    "--embedded-leaf",
    is_flag=True,
    help="Start a NATS leaf node for this device (batches.leaf_* settings) and reach the hub "
    "through it; the Batch API keeps its lines there while the link is down.",
)
def run(config_file: Path | None, embedded_leaf: bool = False, **overrides: Any) -> None:
    """Serve the OpenAI-compatible API until SIGTERM/Ctrl-C (in-flight requests drain first).

    \b
    Endpoints: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models,
               /v1/classify (ONNX), /healthz, /readyz, /status, /metrics

    \b
    A model that fails to load stops the agent with the loader's message (exit code 1),
    unless --keep-running-on-load-error is set.
    """
    from edge_agent.api.app import create_app
    from edge_agent.models import ModelRegistry, plan_models

    settings = _load(config_file, overrides)
    leaf = contextlib.ExitStack()
    if embedded_leaf:
        from edge_agent.batches.leaf import embedded_leaf_for

        try:
            settings = leaf.enter_context(embedded_leaf_for(settings))
        except EdgeError as exc:
            raise click.ClickException(str(exc)) from exc
    _configure_logging(settings)
    for line in unknown_env_warnings():
        log.warning("%s", line)
    try:
        specs = plan_models(settings)
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc
    refusal = bind_refusal(
        settings.host, keys=settings.api_keys, insecure=settings.insecure_no_auth
    )
    if refusal is not None:
        raise click.ClickException(refusal)
    try:
        sock = socket.create_server((settings.host, settings.port), reuse_port=False)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; pick another --port"
        ) from exc
    port = sock.getsockname()[1]
    registry = ModelRegistry(specs, settings)
    app = create_app(settings, registry)
    config = uvicorn.Config(
        app,
        http=bounded_http_protocol(settings.max_header_bytes),
        log_level=settings.log_level,
        log_config=UVICORN_LOG_CONFIG,  # uvicorn's lines as JSON, like ours
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        access_log=False,  # edge_agent.access logs one structured line per request
    )
    click.echo(
        f"edge-agent {__version__}: serving {specs[0].id} on http://{settings.host}:{port}/v1",
        err=True,
    )
    server = AgentServer(
        config, registry=registry, keep_running=settings.keep_running_on_load_error
    )
    with leaf:
        server.run(sockets=[sock])
    if server.load_failed:
        raise click.ClickException(_load_failure(registry, config_file, overrides))


def _configure_logging(settings: EdgeSettings) -> None:
    """stderr logging from the first line on: JSON (unless turned off), uvicorn's lines too."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.telemetry.json_logs:
        handler.setFormatter(JsonFormatter({"component": "edge", "device": settings.device_id}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])


def _load_failure(
    registry: ModelRegistry, config_file: Path | None, overrides: dict[str, Any]
) -> str:
    """The loader's message, and where the failing model's path was set."""
    failed = registry.failed_id
    field = "model_path" if failed == registry.main_id else "extra_models"
    source = setting_source(
        field,
        overrides=overrides,
        config_file=config_file,
        env_prefix=ENV_PREFIX,
        flags=flags_for(EdgeSettings),
    )
    if field == "model_path" and source == "the default":
        source = "the bundled default (no --model-path, AGL_MODEL_PATH or `model_path` set)"
    return (
        f"model {failed!r} failed to load: {registry.error}\n"
        f"  its path came from {source}.\n"
        "  Fix the path, or set keep_running_on_load_error = true "
        "(--keep-running-on-load-error) to keep serving /healthz and /status."
    )


class DrainingServer(uvicorn.Server):
    """uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; after a
    clean drain we exit 0 instead, so supervisors see an orderly stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


class AgentServer(DrainingServer):
    """Stops, as llama-server does, when a model fails to load (``load_failed`` tells),
    unless ``keep_running_on_load_error`` keeps it serving /healthz and /status."""

    def __init__(
        self, config: uvicorn.Config, *, registry: ModelRegistry, keep_running: bool
    ) -> None:
        super().__init__(config)
        self.registry = registry
        self.keep_running = keep_running
        self.load_failed = False

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self.registry.state == "failed" and not self.keep_running and not self.load_failed:
            log.error("stopping: a model failed to load (keep_running_on_load_error is off)")
            self.load_failed = True
        return self.load_failed


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@_settings_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(config_file: Path | None, as_json: bool, **overrides: Any) -> None:
    """Print the settings after flags, AGL_* env vars and the config file are merged.

    The TOML output is a valid edge.toml (pass it back with --config): unset values are
    left out, since TOML has no null.
    """
    for line in unknown_env_warnings():
        click.echo(f"warning: {line}", err=True)
    settings = _load(config_file, overrides)
    if as_json:
        click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))
        return
    click.echo(settings_toml(settings), nl=False)


main.add_command(calibrate_command)
main.add_command(plugins)
main.add_command(ps)
main.add_command(top)
main.add_command(models_group)
