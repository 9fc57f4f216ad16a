"""The ``hubctl`` group and the options its command groups share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import nats
from nats.aio.client import Client

from cloud_hub import __version__
from cloud_hub.errors import HubError
from cloud_hub.settings import HubSettings, load_hub_settings
from shared.errors import AglError
from shared.nats_auth import connect_options

T = TypeVar("T")

#: Where ``hubctl auth`` and ``hubctl devices`` keep keys when --dir is not given.
AUTH_DIR_ENV = "AGL_HUB_AUTH_DIR"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="hubctl")
def main() -> None:
    """Open-AutoGLM cloud hub: serves big models to edge devices over NATS, and runs the fleet.

    \b
    Quick start (a nats-server on localhost, one model from hub.toml):
      hubctl serve --nats-url nats://127.0.0.1:4222 --config hub.toml

    \b
    Fleet identity (one NATS user per device; see README "Fleet identity"):
      hubctl auth init --dir ./auth          # operator, accounts, hub creds, server include
      hubctl devices enroll dev-1 --dir ./auth --site berlin
      hubctl devices list                    # online / stale / offline from heartbeats
      hubctl devices revoke dev-1 --dir ./auth

    Settings come from flags, then AGL_HUB_* environment variables
    (AGL_HUB_NATS_URL=nats://10.0.0.5:4222), then the --config TOML file, then defaults.
    """


def load_settings_or_exit(config_file: Path | None, overrides: dict[str, Any]) -> HubSettings:
    """Hub settings, or a ClickException with the validation message."""
    try:
        return load_hub_settings(config_file, **overrides)
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc


def auth_dir_option(fn: Any) -> Any:
    """``--dir``: the auth directory (default ``$AGL_HUB_AUTH_DIR``)."""
    return click.option(
        "--dir",
        "auth_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=AUTH_DIR_ENV,
        required=True,
        help=f"Auth directory from `hubctl auth init` (or ${AUTH_DIR_ENV}).",
    )(fn)


def nats_options(fn: Any) -> Any:
    """``--nats-url`` and ``--creds``: how a CLI command reaches NATS."""
    fn = click.option(
        "--creds",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="AGL_HUB_CREDENTIALS",
        help="NATS credentials (default: hub.creds in --dir when there is one; none otherwise).",
    )(fn)
    return click.option(
        "--nats-url",
        default=lambda: os.environ.get("AGL_HUB_NATS_URL", "nats://127.0.0.1:4222"),
        show_default="nats://127.0.0.1:4222 or $AGL_HUB_NATS_URL",
        help="NATS server(s), comma-separated.",
    )(fn)


def creds_for(creds: Path | None, auth_dir: Path | None) -> Path | None:
    """The credentials a CLI command connects with: --creds, else DIR/hub.creds if present."""
    if creds is not None:
        return creds
    if auth_dir is not None and (auth_dir / "hub.creds").is_file():
        return auth_dir / "hub.creds"
    return None


async def connect_cli(nats_url: str, creds: Path | None) -> Client:
    """A short-lived NATS connection for one CLI command; ClickException when it fails."""
    try:
        options = connect_options(credentials=creds)
        return await nats.connect(
            [u.strip() for u in nats_url.split(",") if u.strip()],
            name="hubctl",
            connect_timeout=3,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would mean "forever" in nats-py
            **options,
        )
    except AglError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        raise click.ClickException(
            f"cannot reach NATS at {nats_url} ({exc or type(exc).__name__}); check --nats-url"
            + ("" if creds else " and pass --creds (the hub's creds) when the server needs them")
        ) from exc


def run_cli(nats_url: str, creds: Path | None, body: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run ``body(nc)``, close; a HubError (PolicyError, RolloutError…) is a CLI error."""

    async def main() -> T:
        nc = await connect_cli(nats_url, creds)
        try:
            return await body(nc)
        except HubError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            await nc.close()

    return asyncio.run(main())
