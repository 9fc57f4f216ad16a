"""``hubctl stats``: the fleet at a glance, from the devices' latest heartbeats."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click

from cloud_hub.cli.devices import creds_dir_option, fetch_entries
from cloud_hub.cli.root import creds_for, nats_options
from cloud_hub.cli.tables import render_table
from cloud_hub.control.fleet import fleet_summary


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@creds_dir_option
@nats_options
def stats(as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None) -> None:
    """Devices by state, requests and escalation share by router reason, tokens by tier.

    Counts are the sum of each device's latest heartbeat (since that agent started).
    """
    entries = asyncio.run(fetch_entries(nats_url, creds_for(creds, auth_dir)))
    summary = fleet_summary(entries, now=time.time())
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    devices = summary["devices"]
    click.echo(
        f"devices: {devices['total']} ("
        + ", ".join(f"{devices[s]} {s}" for s in ("online", "stale", "offline", "never_seen"))
        + ")"
    )
    requests, escalations = summary["requests"], summary["escalations"]
    click.echo(
        f"requests: {requests['total']}, escalated to the hub: {escalations['total']} "
        f"({escalations['share']:.0%})"
    )
    rows = [
        {
            "reason": reason,
            "requests": n,
            "escalated": escalations["by_reason"].get(reason, {}).get("count", 0),
            "share": f"{escalations['by_reason'].get(reason, {}).get('share', 0.0):.0%}",
        }
        for reason, n in requests["by_reason"].items()
    ]
    if rows:
        click.echo("\n" + render_table(rows))
    tokens = summary["tokens"]["by_tier"]
    if tokens:
        click.echo("\ntokens: " + ", ".join(f"{tier} {n}" for tier, n in tokens.items()))
