"""``edge-agent calibrate``: pick the cascade threshold for a target share of escalations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edge_agent.models import load_runtime, plan_models
from edge_agent.router.calibrate import calibrate, read_prompts_jsonl
from edge_agent.settings import EdgeSettings, load_settings
from shared.errors import AglError
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import SamplingParams, TokenPiece


def score_prompts(
    runtime: GgufRuntime, conversations: list[list[dict[str, str]]], *, max_tokens: int
) -> list[float]:
    """Mean token logprob of the model's greedy answer to each conversation (the cascade's score)."""
    scores = []
    params = SamplingParams(max_tokens=max_tokens, temperature=0, logprobs=True)
    with click.progressbar(conversations, label="scoring prompts", file=sys.stderr) as bar:
        for messages in bar:
            prompt = runtime.prepare_chat(messages)
            runtime.check_fits(prompt, max_tokens)
            logprobs = [
                e.logprob
                for e in runtime.generate(prompt, params)
                if isinstance(e, TokenPiece) and e.logprob is not None
            ]
            scores.append(sum(logprobs) / len(logprobs) if logprobs else 0.0)
    return scores


def _settings(config_file: Path | None) -> EdgeSettings:
    return load_settings(config_file)


@click.command("calibrate")
@click.argument("prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target-escalation",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of prompts that should go to the cloud.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Tokens of each local answer to judge.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent config: the model to score with (default: the bundled one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def calibrate_command(
    prompts: Path,
    target_escalation: float,
    max_tokens: int,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Score PROMPTS (JSONL: {"prompt": …} or {"messages": [...]} per line) with the local model
    and print the `min_mean_logprob` that escalates about --target-escalation of them.

    \b
    Example:
      edge-agent calibrate --target-escalation 0.2 prompts.jsonl
      # then in the agent's config:
      [router.cascade]
      enabled = true
      min_mean_logprob = <printed threshold>
    """
    try:
        records = read_prompts_jsonl(prompts.read_text(encoding="utf-8"))
        settings = _settings(config_file)
        spec = plan_models(settings)[0]
        runtime = load_runtime(spec, settings)
        assert isinstance(runtime, GgufRuntime)
        try:
            conversations = [
                [{"role": m.role, "content": m.content} for m in r.as_messages()] for r in records
            ]
            scores = score_prompts(runtime, conversations, max_tokens=max_tokens)
        finally:
            runtime.close()
        result = calibrate(scores, target_escalation)
    except (AglError, UnicodeDecodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    out: dict[str, Any] = {
        "threshold": result.threshold,
        "escalated_share": result.escalated_share,
        "target_escalation": target_escalation,
        "prompts": result.n,
        "model": spec.id,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(
        f"{result.n} prompts scored with {spec.id}; threshold {result.threshold:.4f} escalates "
        f"{result.escalated_share:.1%} (target {target_escalation:.0%})"
    )
    click.echo(f"\n[router.cascade]\nenabled = true\nmin_mean_logprob = {result.threshold:.4f}")


__all__ = ["calibrate_command", "score_prompts"]
