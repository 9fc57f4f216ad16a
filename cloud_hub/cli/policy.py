"""``hubctl policy``: the fleet's desired state in layers (fleet → site → device)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cloud_hub.cli.devices import creds_dir_option
from cloud_hub.cli.root import creds_for, nats_options, run_cli
from cloud_hub.control.audit import audit
from cloud_hub.control.policy import (
    PolicyError,
    current_record,
    device_sites,
    materialize_all,
    merged_for,
    open_config,
    read_layer,
    read_layer_file,
    set_layer,
)
from cloud_hub.control.rollout import active_overlays
from shared.desired import diff, layer_key, revision
from shared.errors import ConfigError


def _key(site: str | None, device: str | None) -> str:
    try:
        return layer_key(site=site, device=device)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def layer_options(fn: Any) -> Any:
    """``--site`` / ``--device``: which layer (default: the fleet's)."""
    fn = click.option("--device", help="The layer of one device.")(fn)
    return click.option("--site", help="The layer of one site.")(fn)


def _file_layer_options(fn: Any) -> Any:
    """FILE, ``--site`` / ``--device``, ``--dir`` and the NATS options of `set` and `diff`."""
    fn = layer_options(creds_dir_option(nats_options(fn)))
    return click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))(fn)


def _layer_file(file: Path, site: str | None, device: str | None) -> tuple[str, dict[str, Any]]:
    """The layer's key and FILE read and checked as a layer; a bad one is a CLI error."""
    key = _key(site, device)
    try:
        return key, read_layer_file(file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def policy() -> None:
    """Desired state: router policy, plugins, models, telemetry, merged fleet → site → device."""


@policy.command("set")
@_file_layer_options
def set_policy(
    file: Path, site: str | None, device: str | None, auth_dir: Path | None,
    nats_url: str, creds: Path | None,
) -> None:  # fmt: skip
    """Check FILE (TOML) with the agent's schema, store it as a layer, update the devices."""
    key, doc = _layer_file(file, site, device)

    async def body(nc: Any) -> list[str]:
        kv = await open_config(nc)
        old = await read_layer(kv, key)
        await set_layer(kv, key, doc)
        changed = await materialize_all(
            nc, kv, overlays=await active_overlays(nc), extra_devices=[device] if device else []
        )
        await audit(nc.jetstream(), "policy.set", target=key, revision=revision(doc),
                    changes=diff(old, doc), devices=changed)  # fmt: skip
        return changed

    changed = run_cli(nats_url, creds_for(creds, auth_dir), body)
    click.echo(f"{key}: stored (revision {revision(doc)}); {len(changed)} device record(s) changed")


@policy.command("show")
@click.option("--device", help="The merged state this device is told (default: the fleet layer).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@creds_dir_option
@nats_options
def show(
    device: str | None, as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None
) -> None:
    """The merged desired state of a device (with its revision and layers), or the fleet layer."""

    async def body(nc: Any) -> dict[str, Any]:
        kv = await open_config(nc)
        if device is None:
            doc = await read_layer(kv, layer_key())
            return {"layers": ["fleet"], "revision": revision(doc), "state": doc}
        site = (await device_sites(nc)).get(device)
        state, layers = await merged_for(
            kv, device, site, (await active_overlays(nc)).get(device, ())
        )
        told = await current_record(kv, device)
        return {"device": device, "site": site, "layers": layers, "revision": revision(state),
                "told_revision": told.revision if told else None, "state": state}  # fmt: skip

    out = run_cli(nats_url, creds_for(creds, auth_dir), body)
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    click.echo(f"revision {out['revision']} from layers: {', '.join(out['layers'])}")
    click.echo(json.dumps(out["state"], indent=2, sort_keys=True))


@policy.command("diff")
@_file_layer_options
def diff_policy(
    file: Path, site: str | None, device: str | None, auth_dir: Path | None,
    nats_url: str, creds: Path | None,
) -> None:  # fmt: skip
    """What `policy set FILE` would change in the layer: +added, -removed, ~changed paths."""
    key, doc = _layer_file(file, site, device)

    async def body(nc: Any) -> list[str]:
        return diff(await read_layer(await open_config(nc), key), doc)

    lines = run_cli(nats_url, creds_for(creds, auth_dir), body)
    click.echo("\n".join(lines) if lines else f"{key}: no change")
