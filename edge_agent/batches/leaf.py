"""``edge-agent run --embedded-leaf``: a NATS leaf node for this device, started by the agent.

    with embedded_leaf_for(settings) as effective:   # effective.hub.nats_url is the leaf's
        serve(effective)

The leaf keeps its JetStream files in ``batches.leaf_store_dir`` (kept across restarts: the
device's deferred lines live there), links to ``batches.leaf_remote`` (the hub side's leafnode
URL) with ``batches.leaf_credentials`` when given, and uses ``batches.leaf_domain`` (default: the
device id) as its JetStream domain; the agent reads desired state from the hub's domain
(``hub.jetstream_domain``, default ``batches.hub_domain``). On Linux it stops when the agent
dies, even by SIGKILL, so a restarted agent starts it again on the same files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from edge_agent.errors import EdgeError
from edge_agent.settings import EdgeSettings
from shared.embedded_nats import EmbeddedNatsError, free_port
from shared.leaf import LeafConfig, render_leaf_config, running_nats_config


class LeafSetupError(EdgeError):
    """The embedded leaf node cannot start (the message says which setting to fix)."""


@contextlib.contextmanager
def embedded_leaf_for(settings: EdgeSettings) -> Iterator[EdgeSettings]:
    """Start the leaf; yield ``settings`` pointed at it (``hub.nats_url``, ``batches.leaf_domain``)."""
    cfg = settings.batches
    if not cfg.leaf_remote:
        raise LeafSetupError(
            "--embedded-leaf needs the hub side's leafnode URL: set batches.leaf_remote "
            "(AGL_BATCHES__LEAF_REMOTE=nats-leaf://hub:7422)"
        )
    domain = cfg.leaf_domain or settings.device_id
    port = cfg.leaf_port or free_port()
    store = Path(cfg.leaf_store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    try:
        text = render_leaf_config(
            LeafConfig(
                domain=domain,
                store_dir=store / "jetstream",
                remote_urls=[u.strip() for u in cfg.leaf_remote.split(",") if u.strip()],
                listen=f"127.0.0.1:{port}",
                credentials=cfg.leaf_credentials,
                max_file_store=cfg.leaf_max_file_store,
            )
        )
        with running_nats_config(
            text, port=port, log_file=store / "leaf.log", die_with_parent=True
        ) as leaf:
            hub = settings.hub.model_copy(
                update={
                    "nats_url": leaf.url,  # desired state and artifacts: the hub's JetStream
                    "jetstream_domain": settings.hub.jetstream_domain or cfg.hub_domain,
                    # the device's identity on the link is the leaf's; the loopback leaf
                    # ignores them, but the agent then knows it is not in dev mode
                    "credentials": settings.hub.credentials or cfg.leaf_credentials,
                }
            )
            batches = cfg.model_copy(update={"leaf_domain": domain})
            yield settings.model_copy(update={"hub": hub, "batches": batches})
    except EmbeddedNatsError as exc:
        raise LeafSetupError(f"the embedded leaf node did not start: {exc}") from exc
