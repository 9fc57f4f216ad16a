"""``hubctl plugins``: push signed Wasm plugins into ``agl_plugins`` and list them.

The push/list plumbing here is shared with ``hubctl models``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cloud_hub.cli.devices import creds_dir_option
from cloud_hub.cli.root import connect_cli, creds_for, nats_options
from cloud_hub.cli.tables import render_table
from cloud_hub.control.artifacts import PushError, list_artifacts, push_artifact, signing_key
from cloud_hub.control.auth import NKey, key_from_seed
from shared.artifacts import Kind


def signing_key_option(fn: Any) -> Any:
    """``--signing-key``: the nkey seed that signs artifacts (default DIR/signing.nk)."""
    return click.option(
        "--signing-key",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="AGL_HUB_SIGNING_KEY",
        help="Seed file of the signing nkey (default: signing.nk in --dir, made on first push).",
    )(fn)


def load_signer(signing_key_file: Path | None, auth_dir: Path | None) -> NKey:
    """The signing key from --signing-key, else DIR/signing.nk (created when missing)."""
    try:
        if signing_key_file is not None:
            return key_from_seed(signing_key_file.read_bytes())
        if auth_dir is not None:
            return signing_key(auth_dir)
    except (OSError, ValueError, PushError) as exc:
        raise click.ClickException(f"signing key: {exc}") from exc
    raise click.ClickException(
        "no signing key: pass --dir (the auth directory; signing.nk is made there) or "
        "--signing-key FILE"
    )


def push_with_bar(
    kind: Kind,
    path: Path,
    *,
    name: str | None,
    manifest: Path | None,
    signer: NKey,
    nats_url: str,
    creds: Path | None,
) -> dict[str, Any]:
    """Upload with a progress bar; the stored row as JSON data."""

    size = path.stat().st_size

    async def run() -> dict[str, Any]:
        nc = await connect_cli(nats_url, creds)
        err = sys.stderr
        try:
            with click.progressbar(length=size, label=f"{kind} {path.name}", file=err) as bar:
                advance: Callable[[int], None] = bar.update
                row = await push_artifact(
                    nc.jetstream(), kind=kind, path=path, signer=signer, name=name,
                    manifest=manifest, progress=advance,
                )  # fmt: skip
            return row.as_json()
        except PushError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            await nc.close()

    return asyncio.run(run())


def show_list(kind: Kind, *, as_json: bool, nats_url: str, creds: Path | None) -> None:
    """Print the stored artifacts of ``kind`` as a table or JSON."""

    async def run() -> list[dict[str, Any]]:
        nc = await connect_cli(nats_url, creds)
        try:
            return [r.as_json() for r in await list_artifacts(nc.jetstream(), kind)]
        finally:
            await nc.close()

    rows = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no {kind}s stored; push one with `hubctl {kind}s push`")
    else:
        shown = [{**r, "sha256": r["sha256"][:16], "signer": r["signer"][:12]} for r in rows]
        click.echo(render_table([{k: v for k, v in r.items() if k != "kind"} for r in shown]))


@click.group()
def plugins() -> None:
    """Wasm plugins in the object store agl_plugins (sha256-addressed, signed)."""


@plugins.command("push")
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The plugin's NAME.plugin.toml (its sha256 must be the module's).",
)
@signing_key_option
@creds_dir_option
@nats_options
def push(
    module: Path, manifest: Path, signing_key: Path | None, auth_dir: Path | None,
    nats_url: str, creds: Path | None,
) -> None:  # fmt: skip
    """Sign and upload MODULE (.wasm) with its manifest; prints NAME@SHA256 for a rollout."""
    signer = load_signer(signing_key, auth_dir)
    row = push_with_bar("plugin", module, name=None, manifest=manifest, signer=signer,
                        nats_url=nats_url, creds=creds_for(creds, auth_dir))  # fmt: skip
    click.echo(f"{row['name']}@{row['sha256']} ({row['size']} bytes, signed by {row['signer']})")


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@creds_dir_option
@nats_options
def list_plugins(as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None) -> None:
    """The stored plugins: name, sha256, size, version, signer."""
    show_list("plugin", as_json=as_json, nats_url=nats_url, creds=creds_for(creds, auth_dir))
