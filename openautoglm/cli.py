"""``open-autoglm``: the all-in-one launcher."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from pathlib import Path

import click

from openautoglm import __version__
from openautoglm.allinone import AllInOneOptions, run
from openautoglm.pipeline_cli import pipeline
from openautoglm.sim.cli import sim
from shared.errors import AglError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="open-autoglm")
def main() -> None:
    """Open-AutoGLM on one machine: embedded NATS + hub + edge agent."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Edge agent listen address.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=int,
    help="Edge agent HTTP port (0 = any free one).",
)
@click.option(
    "--grpc-port",
    type=int,
    help="Edge agent gRPC port: KServe v2 inference protocol and agl.v1.Chat (0 = any free one). "
    "[default: 50051, or a free one when 50051 is taken]",
)
@click.option("--nats-port", type=int, help="Embedded NATS port. [default: a free one]")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Edge agent TOML config (its hub link and, unless it routes itself, its router are set for you).",
)
@click.option(
    "--hub-threads", default=1, show_default=True, type=int, help="CPU threads of the hub's model."
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def up(
    host: str,
    port: int,
    grpc_port: int | None,
    nats_port: int | None,
    config_file: Path | None,
    hub_threads: int,
    log_level: str,
) -> None:
    """Start an embedded nats-server, a hub and an edge agent; Ctrl-C stops them all.

    \b
    The hub serves the bundled SmolLM2 as `glm-4-plus` (a stand-in for a big model), and the
    agent routes: long prompts and `glm-4-plus` go to the hub, other requests are answered
    locally and escalated when the local answer looks unsure (reason `confidence`).
    Ctrl-C lets in-flight requests finish (up to drain_timeout_s on the agent, then on the
    hub); `kill -USR1 <pid>` prints every thread's stack to stderr if it seems stuck.
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    opts = AllInOneOptions(
        host=host,
        port=port,
        grpc_port=grpc_port,
        nats_port=nats_port,
        config_file=config_file,
        hub_threads=hub_threads,
        log_level=log_level,
    )
    try:
        asyncio.run(run(opts))
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


main.add_command(pipeline)
main.add_command(sim)
