"""``open-autoglm pipeline run FILE.toml --input k=v``: run a declared pipeline from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from shared.pipelines import PipelineError

__all__ = ["pipeline"]


@click.group()
def pipeline() -> None:
    """Declared pipelines (TOML): run them against an agent."""


@pipeline.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An input key (repeat it); VALUE is read as JSON when it parses, else as text.",
)
@click.option(
    "--base-url",
    envvar="OPENAUTOGLM_BASE_URL",
    help="The agent's OpenAI API. [default: http://127.0.0.1:8080/v1]",
)
@click.option("--embedded", is_flag=True, help="Start an agent in this process instead.")
@click.option("--trace/--no-trace", default=False, help="Print each task's tier, reason and time.")
def run(
    file: Path, pairs: tuple[str, ...], base_url: str | None, embedded: bool, trace: bool
) -> None:
    """Run FILE once and print every key as JSON (a streaming last task prints as it goes)."""
    from openautoglm.pipeline import Pipeline

    inputs = dict(_pair(p) for p in pairs)
    try:
        flow = Pipeline.from_toml(file, base_url=base_url, mode="embedded" if embedded else "agent")
        if flow.graph.streaming_task is not None:
            for piece in flow.stream(**inputs):
                click.echo(piece, nl=False, err=True)
            click.echo("", err=True)
            result = flow.last_result
        else:
            result = flow.run(**inputs)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from exc
    if trace:
        for t in result.trace:
            click.echo(
                f"{t.task:<20} {t.status:<8} {t.tier or '-':<6} {t.reason or '-':<11} "
                f"{t.latency_s * 1000:8.0f} ms",
                err=True,
            )
    json.dump(dict(result), sys.stdout, ensure_ascii=False, indent=2, default=repr)
    click.echo()


def _pair(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--input")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value
