"""``hubctl report``: the fleet report (Markdown, self-contained HTML, PNG plots) of a real fleet,
from the hub's registry: each device's latest heartbeat (``shared.fleet_report.snapshot``)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import click

from cloud_hub.cli.devices import creds_dir_option, fetch_entries
from cloud_hub.cli.root import creds_for, nats_options
from cloud_hub.control.fleet import DeviceEntry, liveness
from shared.errors import AglError
from shared.fleet_report import load_baseline
from shared.fleet_report.snapshot import DeviceFigures, FleetSnapshot, write_snapshot_report

__all__ = ["parse_since", "report", "snapshot_of"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str) -> float:
    """``"24h"`` → 86400.0 seconds (units s, m, h, d); ``ValueError`` says what is accepted."""
    found = _SINCE.match(text.strip())
    if not found:
        raise ValueError(f"--since {text!r}: give a number and a unit s, m, h or d (e.g. 24h, 30m)")
    return float(found.group(1)) * _UNITS[found.group(2)]


def snapshot_of(entries: list[DeviceEntry], *, now: float, since_s: float | None) -> FleetSnapshot:
    """The devices seen within ``since_s`` (all when None), as the report needs them."""
    devices = []
    for entry in entries:
        age = None if entry.last_seen is None else now - entry.last_seen
        if since_s is not None and (age is None or age > since_s):
            continue
        beat = entry.heartbeat
        devices.append(
            DeviceFigures(
                device=entry.device,
                state=liveness(entry, now=now),
                last_seen_age_s=age,
                requests_by_reason=dict(beat.requests_by_reason) if beat else {},
                escalations_by_reason=dict(beat.escalations_by_reason) if beat else {},
                tokens_by_tier=dict(beat.tokens_by_tier) if beat else {},
                latency_buckets=dict(beat.latency_buckets) if beat else {},
                http_requests=beat.http_requests if beat else 0,
                http_errors=beat.http_errors if beat else 0,
                breaker=beat.breaker if beat else "closed",
            )
        )
    return FleetSnapshot(devices=devices, since_s=since_s)


@click.command()
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Devices seen within this window (s, m, h, d); 'all' for every registered device.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("fleet-report"),
    show_default=True,
    help="Directory for report.md, report.html, the PNG plots and figures.json.",
)
@click.option(
    "--baseline",
    "baseline_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="An earlier report directory: the figures table compares against its figures.json.",
)
@creds_dir_option
@nats_options
def report(
    since: str,
    out_dir: Path,
    baseline_dir: Path | None,
    auth_dir: Path | None,
    nats_url: str,
    creds: Path | None,
) -> None:
    """The fleet report from the devices' latest heartbeats: devices by state, requests,
    escalation and fallback shares, latency from the devices' histograms, tokens by tier,
    escalation share per device (plots need the `sim` extra: matplotlib).

    \b
    Example:
      hubctl report --since 24h --out reports/today --baseline reports/yesterday
    """
    try:
        since_s = None if since == "all" else parse_since(since)
        baseline = None if baseline_dir is None else load_baseline(baseline_dir)
    except (ValueError, AglError) as exc:
        raise click.ClickException(str(exc)) from exc
    entries = asyncio.run(fetch_entries(nats_url, creds_for(creds, auth_dir)))
    snap = snapshot_of(entries, now=time.time(), since_s=since_s)
    try:
        figures = write_snapshot_report(snap, out_dir, baseline=baseline)
    except ImportError as exc:
        raise click.ClickException(
            f"the report's plots need matplotlib ({exc}); pip install 'open-autoglm[sim]'"
        ) from exc
    click.echo(
        f"{len(snap.devices)} devices, {figures['requests']:.0f} requests, "
        f"{figures['escalation_share']:.1%} escalated; report: {out_dir / 'report.html'}"
    )
