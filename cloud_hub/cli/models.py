"""``hubctl models``: push signed model files (GGUF, ONNX) into ``agl_models`` and list them."""

from __future__ import annotations

from pathlib import Path

import click

from cloud_hub.cli.devices import creds_dir_option
from cloud_hub.cli.plugins import load_signer, push_with_bar, show_list, signing_key_option
from cloud_hub.cli.root import creds_for, nats_options


@click.group()
def models() -> None:
    """Model files in the object store agl_models (sha256-addressed, signed, chunked)."""


@models.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "model_id", required=True, help="The model id devices serve it as.")
@signing_key_option
@creds_dir_option
@nats_options
def push(
    file: Path, model_id: str, signing_key: Path | None, auth_dir: Path | None,
    nats_url: str, creds: Path | None,
) -> None:  # fmt: skip
    """Sign and upload FILE (.gguf or .onnx) in chunks; prints ID@SHA256 for a rollout."""
    if file.suffix.lower() not in (".gguf", ".onnx"):
        raise click.BadParameter(
            f"{file.name}: a model is a .gguf or .onnx file", param_hint="FILE"
        )
    signer = load_signer(signing_key, auth_dir)
    row = push_with_bar("model", file, name=model_id, manifest=None, signer=signer,
                        nats_url=nats_url, creds=creds_for(creds, auth_dir))  # fmt: skip
    click.echo(f"{row['name']}@{row['sha256']} ({row['size']} bytes in {row['chunks']} chunks)")


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@creds_dir_option
@nats_options
def list_models(as_json: bool, auth_dir: Path | None, nats_url: str, creds: Path | None) -> None:
    """The stored models: id, sha256, size, signer."""
    show_list("model", as_json=as_json, nats_url=nats_url, creds=creds_for(creds, auth_dir))
