"""``hubctl devices``: enroll, revoke, list and show the fleet's devices."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click

from cloud_hub.cli.root import auth_dir_option, connect_cli, creds_for, nats_options
from cloud_hub.cli.tables import ago, device_row, render_table
from cloud_hub.control.fleet import DeviceEntry, liveness
from cloud_hub.control.keystore import AuthStoreError, KeyStore
from cloud_hub.control.push import PushError, push_account
from cloud_hub.control.registry import Registry, RegistryError

_MAX_LABELS = 32


@click.group()
def devices() -> None:
    """Enroll, revoke, list and inspect edge devices.

    \b
    Each device gets its own NATS user (`enroll` writes DEVICE_ID.creds) that may use only
    its own subjects (agl.v1.dev.DEVICE_ID.>) and inbox (_INBOX.DEVICE_ID.>). Heartbeats keep
    the registry (KV agl_devices) current: a device is online, stale after 3 missed beats,
    offline after 10.
    """


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or len(key) > 64 or len(value) > 256:
            raise click.BadParameter(
                f"{item!r}: write labels as key=value (key ≤ 64, value ≤ 256 characters)",
                param_hint="--label",
            )
        labels[key.strip()] = value.strip()
    if len(labels) > _MAX_LABELS:
        raise click.BadParameter(f"at most {_MAX_LABELS} labels", param_hint="--label")
    return labels


async def _record(nats_url: str, creds: Path | None, step: Any) -> str | None:
    """Run ``step(registry)``; return why it failed (None: done)."""
    try:
        nc = await connect_cli(nats_url, creds)
    except click.ClickException as exc:
        return exc.message
    try:
        await step(await Registry.open(nc))
        return None
    except (RegistryError, OSError) as exc:
        return str(exc)
    finally:
        await nc.close()


@devices.command()
@click.argument("device_id")
@auth_dir_option
@click.option("--site", help="Where the device runs (a site, a plant, a store).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for DEVICE_ID.creds.",
)
@nats_options
def enroll(
    device_id: str,
    auth_dir: Path,
    site: str | None,
    labels: tuple[str, ...],
    out: Path,
    nats_url: str,
    creds: Path | None,
) -> None:
    """Issue DEVICE_ID.creds and record the device (site, labels) in the registry.

    \b
    DEVICE_ID: 1-64 letters, digits, '-' or '_' (the agent's device_id).
    On the device:  AGL_DEVICE_ID=DEVICE_ID AGL_HUB__CREDENTIALS=/etc/agl/DEVICE_ID.creds \\
                    edge-agent run        (or hub.credentials in edge.toml)
    Copy the file over a safe channel: it holds the device's secret seed.
    """
    parsed = _labels(labels)
    now = int(time.time())
    try:
        path, record = KeyStore(auth_dir).enroll(
            device_id, site=site, labels=parsed, out=out, now=now
        )
    except (AuthStoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"enrolled {device_id}: credentials in {path} (mode 0600)")

    async def step(registry: Registry) -> None:
        await registry.record_enrollment(device_id, site=site, labels=parsed, enrolled_at=now)

    problem = asyncio.run(_record(nats_url, creds_for(creds, auth_dir), step))
    if problem:
        click.echo(
            f"warning: not recorded in the registry ({problem}); the device appears there with "
            "its first heartbeat, without site and labels",
            err=True,
        )
    click.echo(f"  on the device: device_id = {record.device!r}, hub.credentials = {str(path)!r}")


@devices.command()
@click.argument("device_id")
@auth_dir_option
@nats_options
def revoke(device_id: str, auth_dir: Path, nats_url: str, creds: Path | None) -> None:
    """Revoke DEVICE_ID: the server drops its connection and refuses it from now on.

    The revocation is signed into the account JWT in --dir and pushed to the server as the
    system user (no restart). Running it again pushes the account JWT again.
    """
    store = KeyStore(auth_dir)
    now = int(time.time())
    try:
        record = store.device(device_id)
        if record is None:
            raise AuthStoreError(f"device {device_id} is not enrolled in {auth_dir}")
        jwt = store.account_jwt() if record.revoked_at else store.revoke(device_id, now=now)
        message = asyncio.run(push_account(nats_url, store.system_creds, jwt))
    except (AuthStoreError, PushError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {device_id}: the server says {message!r}")

    async def step(registry: Registry) -> None:
        await registry.record_revocation(device_id, at=now)

    problem = asyncio.run(_record(nats_url, creds_for(creds, auth_dir), step))
    if problem:
        click.echo(f"warning: registry not updated ({problem})", err=True)


async def fetch_entries(nats_url: str, creds: Path | None) -> list[DeviceEntry]:
    nc = await connect_cli(nats_url, creds)
    try:
        return await (await Registry.open(nc, create=False)).entries()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        await nc.close()


def creds_dir_option(fn: Any) -> Any:
    return click.option(
        "--dir",
        "auth_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="AGL_HUB_AUTH_DIR",
        help="Auth directory; its hub.creds is used when --creds is not given.",
    )(fn)


@devices.command("list")
@click.option("--site", help="Only devices of this site.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per device).")
@creds_dir_option
@nats_options
def list_devices(
    site: str | None, as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None
) -> None:
    """One line per device: state, last heartbeat, version, load, escalation share.

    \b
    STATE: online | stale (3 missed heartbeats) | offline (10 missed) | never_seen | revoked
    """
    entries = asyncio.run(fetch_entries(nats_url, creds_for(creds, auth_dir)))
    entries = [e for e in entries if site is None or e.site == site]
    now = time.time()
    rows = [device_row(e, now=now) for e in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no devices" + (f" at site {site}" if site else "") + " in the registry")
        return
    click.echo(render_table(rows))


@devices.command()
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@creds_dir_option
@nats_options
def show(
    device_id: str, as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None
) -> None:
    """Everything the registry knows about DEVICE_ID, with its last heartbeat."""
    entries = asyncio.run(fetch_entries(nats_url, creds_for(creds, auth_dir)))
    entry = next((e for e in entries if e.device == device_id), None)
    if entry is None:
        raise click.ClickException(
            f"device {device_id} is not in the registry; `hubctl devices list` shows who is"
        )
    now = time.time()
    data = {"state": liveness(entry, now=now), **entry.model_dump(mode="json")}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    beat = entry.heartbeat
    lines = [
        ("device", entry.device),
        ("state", device_row(entry, now=now)["state"]),
        ("site", entry.site or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in entry.labels.items()) or "-"),
        ("enrolled", ago(entry.enrolled_at, now)),
        ("last seen", ago(entry.last_seen, now)),
    ]
    if beat is not None:
        lines += [
            ("agent version", beat.agent_version),
            ("uptime", f"{beat.uptime_s:.0f} s"),
            ("heartbeat every", f"{beat.interval_s:g} s"),
            ("config revision", beat.config_revision or "-"),
            ("queue depth", str(beat.queue_depth)),
            ("tokens/s", f"{beat.tok_s:.1f}"),
            ("escalation share", f"{beat.escalation_share:.0%}"),
            ("breaker", beat.breaker),
            ("models", ", ".join(f"{m.name} ({(m.sha256 or '?')[:12]})" for m in beat.models)),
            (
                "plugins",
                ", ".join(f"{p.name} ({(p.sha256 or '?')[:12]})" for p in beat.plugins) or "-",
            ),
        ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key.ljust(width)}  {value}")
