"""``hubctl rollout``: staged rollouts of a plugin, a model or a policy, with automatic rollback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import click

from cloud_hub.cli.devices import creds_dir_option
from cloud_hub.cli.root import creds_for, nats_options, run_cli
from cloud_hub.control.policy import PolicyError, read_layer_file
from cloud_hub.control.rollout import get_rollout, set_status, start_rollout, tick
from cloud_hub.control.rollout_plan import Bounds, RolloutError, RolloutState, parse_waves

_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]{1,64})@(?P<sha>[0-9a-fA-F]{64})$")


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r}: write e.g. 60s, 2m or 500ms", param_hint="--window")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def _change(
    plugin: str | None, model: str | None, policy_file: Path | None
) -> tuple[Any, str, dict[str, Any]]:
    given = [x for x in (plugin, model, policy_file) if x is not None]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --plugin NAME@SHA, --model ID@SHA, --policy FILE"
        )
    if policy_file is not None:
        try:
            return "policy", policy_file.name, read_layer_file(policy_file)
        except PolicyError as exc:
            raise click.ClickException(str(exc)) from exc
    ref = plugin or model or ""
    match = _REF.match(ref)
    if not match:
        flag = "--plugin" if plugin else "--model"
        raise click.BadParameter(f"{ref!r}: write NAME@SHA256 (64 hex digits)", param_hint=flag)
    name, sha = match["name"], match["sha"].lower()
    if plugin:
        return "plugin", ref, {"plugins": {name: {"sha256": sha}}}
    return "model", ref, {"models": {name: {"sha256": sha, "main": True}}}


def _target(site: str | None) -> str:
    return f"site.{site}" if site else "fleet"


def _print(state: RolloutState | None, as_json: bool) -> None:
    if state is None:
        click.echo("{}" if as_json else "no rollout")
        return
    if as_json:
        data = state.model_dump(mode="json", exclude={"snapshot"})
        data["updated"] = state.updated
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    wave = f"wave {state.wave + 1}/{len(state.waves)}" if state.wave >= 0 else "not started"
    click.echo(f"rollout {state.id} of {state.label} on {state.target}: {state.status}, {wave}, "
               f"{len(state.updated)}/{len(state.devices)} devices updated"
               + (f"; {state.reason}" if state.reason else ""))  # fmt: skip


@click.group()
def rollout() -> None:
    """Staged rollouts: waves, health windows compared with the devices not updated, rollback."""


@rollout.command("start")
@click.option("--plugin", help="NAME@SHA256 of a pushed plugin.")
@click.option("--model", help="ID@SHA256 of a pushed model.")
@click.option(
    "--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--site", help="Only this site's devices (default: the whole fleet).")
@click.option("--waves", default="5%,25%,100%", show_default=True)
@click.option("--window", default="60s", show_default=True, help="Health window after each wave.")
@click.option("--max-error-rate", default=0.02, show_default=True, type=click.FloatRange(0, 1))
@click.option("--max-p95-ratio", default=1.5, show_default=True, type=click.FloatRange(1, None))
@click.option(
    "--detach", is_flag=True, help="Store the rollout and return; `rollout follow` drives it."
)
@click.option("--json", "as_json", is_flag=True)
@creds_dir_option
@nats_options
def start(
    plugin: str | None, model: str | None, policy_file: Path | None, site: str | None,
    waves: str, window: str, max_error_rate: float, max_p95_ratio: float, detach: bool,
    as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None,
) -> None:  # fmt: skip
    """Start a rollout and (unless --detach) drive it to the end, printing each step."""
    kind, label, change = _change(plugin, model, policy_file)
    try:
        shares = parse_waves(waves)
    except RolloutError as exc:
        raise click.BadParameter(str(exc), param_hint="--waves") from None
    bounds = Bounds(_duration(window), max_error_rate, max_p95_ratio)

    async def body(nc: Any) -> RolloutState:
        state = await start_rollout(nc, target=_target(site), kind=kind, label=label,
                                    change=change, waves=shares, bounds=bounds)  # fmt: skip
        return state if detach else await _follow(nc, state.target, as_json)

    _print(run_cli(nats_url, creds_for(creds, auth_dir), body), as_json)


async def _follow(nc: Any, target: str, as_json: bool, poll_s: float = 0.5) -> RolloutState:
    last = None
    while True:
        state = await tick(nc, target)
        if state is None:
            raise click.ClickException(
                f"no rollout on {target}; start one with `hubctl rollout start`"
            )
        if not as_json and (state.wave, state.status) != last:
            _print(state, False)
            last = (state.wave, state.status)
        if state.status not in ("running", "paused"):
            return state
        await asyncio.sleep(min(poll_s, max(state.window_s / 10, 0.05)))


def _target_command(
    name: str, doc: str, body: Callable[[str, bool], Callable[[Any], Awaitable[Any]]]
) -> None:
    """``hubctl rollout NAME [--site S] [--json]``: run ``body(target, as_json)`` and print."""

    @rollout.command(name, help=doc)
    @click.option("--site")
    @click.option("--json", "as_json", is_flag=True)
    @creds_dir_option
    @nats_options
    def cmd(
        site: str | None, as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None
    ) -> None:
        _print(run_cli(nats_url, creds_for(creds, auth_dir), body(_target(site), as_json)), as_json)


def _status_command(name: str, to: Literal["running", "paused", "aborted"], doc: str) -> None:
    _target_command(name, doc, lambda target, _: lambda nc: set_status(nc, target, to))


_target_command(
    "follow",
    "Drive the target's rollout to the end (the controller loop).",
    lambda target, as_json: lambda nc: _follow(nc, target, as_json),
)
_target_command(
    "status",
    "The target's rollout: wave, devices updated, status and reason.",
    lambda target, _: lambda nc: get_rollout(nc, target),
)
_status_command("pause", "paused", "Hold the rollout where it is (no new waves, no judging).")
_status_command("resume", "running", "Go on with a paused rollout.")
_status_command("abort", "aborted", "Stop the rollout and roll every updated device back.")
