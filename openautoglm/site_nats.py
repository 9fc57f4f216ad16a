"""The all-in-one's NATS: a hub-side server and the local device's leaf node (issue 11's layout).

    with local_site(root, keys, device="dev-1", creds=creds, port=None) as site:
        site.hub_url     # operator mode, JetStream domain ``hub``, leafnode listener (loopback)
        site.leaf_url    # the device's leaf (open on loopback, its own JetStream domain)

The hub connects to the hub side with its own credentials; the leaf links to it with the local
device's credentials, so only that device's traffic crosses the link (``device_permissions``).
The agent connects to the leaf: its Batch API keeps lines in the leaf's JetStream (domain
``site.domain``) and they reach the hub's workers across the link, as on a real edge site.
Both servers keep their files under ``root`` and stop with this process, even on SIGKILL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloud_hub.control.keystore import KeyStore
from shared.embedded_nats import EmbeddedNatsError, free_port
from shared.leaf import (
    HUB_DOMAIN,
    HubSideConfig,
    LeafConfig,
    render_hub_config,
    render_leaf_config,
    running_nats_config,
)

__all__ = ["LocalSite", "local_site"]


@dataclass(frozen=True)
class LocalSite:
    """Where the hub and the agent connect."""

    hub_url: str
    """The hub side's client URL (operator mode): the hub, `hubctl`, other devices."""
    leaf_url: str
    """The local device's leaf node (open, loopback): the agent."""
    leaf_remote: str
    """The hub side's leafnode URL (``nats-leaf://…``): another device's ``--embedded-leaf``."""
    domain: str
    """The leaf's JetStream domain (the device id): where batch lines wait."""
    hub_domain: str = HUB_DOMAIN


#: Tries at starting the two servers when a free port was taken before a server bound it.
_START_ATTEMPTS = 3


@contextlib.contextmanager
def local_site(
    root: Path, keys: KeyStore, *, device: str, creds: Path, port: int | None
) -> Iterator[LocalSite]:
    """Start the hub-side server (client ``port`` or a free one) and the device's leaf.

    Ports left to ``free_port()`` can be taken by another process before a server binds them;
    then both servers start again on fresh ports (a ``port`` the caller chose is not changed).
    """
    with contextlib.ExitStack() as stack:
        attempt = 1
        while True:
            try:
                site = _start_site(stack, root, keys, device=device, creds=creds, port=port)
                break
            except EmbeddedNatsError:
                stack.close()
                if port is not None or attempt == _START_ATTEMPTS:
                    raise
                attempt += 1
        yield site


def _start_site(
    stack: contextlib.ExitStack,
    root: Path,
    keys: KeyStore,
    *,
    device: str,
    creds: Path,
    port: int | None,
) -> LocalSite:
    hub_port, leaf_listen, leaf_port = port or free_port(), free_port(), free_port()
    hub_conf = render_hub_config(
        HubSideConfig(
            store_dir=root / "hub-js",
            listen=f"127.0.0.1:{hub_port}",
            leaf_listen=f"127.0.0.1:{leaf_listen}",
            auth_include=keys.server_include,
        )
    )
    remote = f"nats-leaf://127.0.0.1:{leaf_listen}"
    leaf_conf = render_leaf_config(
        LeafConfig(
            domain=device,
            store_dir=root / "leaf-js",
            remote_urls=[remote],
            listen=f"127.0.0.1:{leaf_port}",
            credentials=creds,
            reconnect="1s",
        )
    )
    hub = stack.enter_context(
        running_nats_config(
            hub_conf, port=hub_port, log_file=root / "hub-nats.log", die_with_parent=True
        )
    )
    leaf = stack.enter_context(
        running_nats_config(
            leaf_conf, port=leaf_port, log_file=root / "leaf.log", die_with_parent=True
        )
    )
    return LocalSite(hub_url=hub.url, leaf_url=leaf.url, leaf_remote=remote, domain=device)
