"""``hubctl audit``: desired-state changes and rollout steps, newest last."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from cloud_hub.cli.devices import creds_dir_option
from cloud_hub.cli.root import creds_for, nats_options, run_cli
from cloud_hub.control.audit import read_audit


@click.command("audit")
@click.option("--last", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per line).")
@creds_dir_option
@nats_options
def audit_cmd(
    last: int, as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None
) -> None:
    """The audit stream AGL_AUDIT: policy sets, rollout starts, waves, rollbacks, aborts."""
    entries: list[dict[str, Any]] = run_cli(
        nats_url, creds_for(creds, auth_dir), lambda nc: read_audit(nc.jetstream(), last=last)
    )
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry, sort_keys=True))
            continue
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("at", 0)))
        rest = {k: v for k, v in entry.items() if k not in ("at", "event", "by")}
        click.echo(
            f"{at} {entry.get('event')} by {entry.get('by')}: {json.dumps(rest, sort_keys=True)}"
        )
