"""``hubctl auth init``: the operator, accounts, hub credentials and server config include."""

from __future__ import annotations

import time
from pathlib import Path

import click

from cloud_hub.cli.root import auth_dir_option
from cloud_hub.control.keystore import AuthStoreError, KeyStore


@click.group()
def auth() -> None:
    """Set up decentralized NATS auth (operator → account → one user per device)."""


@auth.command("init")
@auth_dir_option
def init(auth_dir: Path) -> None:
    """Create keys, JWTs, the hub's credentials and a nats-server config include in --dir.

    \b
    Writes (seeds and .creds with mode 0600; nothing secret is printed):
      operator.nk/.jwt, account.nk/.jwt (JetStream on), system.nk/.jwt (system account)
      hub.creds          the hub's user: `hubctl serve --credentials DIR/hub.creds`
      system.creds       pushes revocations (`hubctl devices revoke`)
      nats-auth.conf     `include` it in nats-server.conf; revocations apply without a restart
      jwt/               the server's account store (full resolver)

    \b
    Then:
      nats-server -js -c DIR/nats-auth.conf          (or include it from your config)
      hubctl devices enroll dev-1 --dir DIR --site berlin
    """
    store = KeyStore(auth_dir)
    try:
        auth_dir.mkdir(parents=True, exist_ok=True)
        auth_dir.chmod(0o700)
        store.init(now=int(time.time()))
    except (AuthStoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"auth initialised in {auth_dir}")
    click.echo(f"  nats-server include  {store.server_include}")
    click.echo(f"  hub credentials      {store.hub_creds}")
    click.echo(f"  next: nats-server -js -c {store.server_include}")
    click.echo(f"        hubctl serve --credentials {store.hub_creds} --config hub.toml")
    click.echo(f"        hubctl devices enroll DEVICE_ID --dir {auth_dir}")
