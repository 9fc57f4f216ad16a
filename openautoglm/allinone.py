"""Run an embedded nats-server, a hub and an edge agent together (the README's main job).

The hub serves the bundled SmolLM2 under the name ``glm-4-plus``: a stand-in for a big
cloud model, so the whole escalation path works on a laptop with no GPU and no network.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import uvicorn

from cloud_hub.control.keystore import KeyStore
from cloud_hub.serving import running_hub
from cloud_hub.settings import HubModelSpec, HubSettings
from edge_agent.api.api_keys import bind_refusal
from edge_agent.api.app import create_app
from edge_agent.api.http_protocol import bounded_http_protocol
from edge_agent.cli import DrainingServer
from edge_agent.models import ModelRegistry, plan_models
from edge_agent.settings import EdgeSettings, load_settings
from openautoglm.aliases import CLOUD_MODEL, cloud_aliases, local_aliases
from openautoglm.site_nats import LocalSite, local_site
from shared.model_files import bundled_model_path
from shared.telemetry.logs import UVICORN_LOG_CONFIG

log = logging.getLogger("openautoglm")

#: Routing used by the demo: long prompts and the cloud aliases (GLM, Claude and GPT family
#: names) go to the hub; other requests are answered locally first and escalated when the local
#: answer is unsure. ``glm-small`` is answered by the local model.
DEMO_ROUTER: dict[str, Any] = {
    "cloud_aliases": cloud_aliases(),
    "default_cloud_model": CLOUD_MODEL,
    "rules": [{"name": "long-prompts", "min_prompt_tokens": 400, "tier": "cloud"}],
    "load_slo_s": 20.0,
    "cascade": {"enabled": True, "min_mean_logprob": -0.9, "first_k": 8},
}


DEFAULT_GRPC_PORT = 50051


def demo_router(local_model: str) -> dict[str, Any]:
    """``DEMO_ROUTER`` with ``glm-small`` aliasing ``local_model``."""
    return {**DEMO_ROUTER, "local_aliases": local_aliases(local_model)}


@dataclass(frozen=True)
class AllInOneOptions:
    """What ``open-autoglm up`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int | None = None
    """gRPC (KServe v2 + agl.v1.Chat); None: the config file's ``grpc_port``, else 50051 or,
    when that is taken, a free one (the banner says which)."""
    nats_port: int | None = None
    config_file: Path | None = None
    hub_threads: int = 1
    log_level: str = "warning"


def _banner(url: str, site: LocalSite, model: str, grpc: str, *, device: str, auth: Path) -> str:
    chat = f"{url}/v1/chat/completions"
    nats_url = site.hub_url
    return f"""
open-autoglm is up
  edge agent (OpenAI API)  {url}/v1      local model: {model}
  edge agent (gRPC)        {grpc}      KServe v2 inference protocol, agl.v1.Chat
  hub                      {CLOUD_MODEL} (stand-in: the bundled SmolLM2, served over NATS)
  hub-side NATS            {nats_url}  (loopback only, JetStream domain {site.hub_domain},
                           leaf nodes at {site.leaf_remote}, temporary store)
  edge site leaf           {site.leaf_url}  (the agent's NATS: JetStream domain {site.domain},
                           linked to the hub side with the device's credentials)
  batch API                {url}/v1/batches  (OpenAI Batch API: lines wait on the
                           leaf and reach the hub across the link, also after an outage)
  fleet identity           operator-mode NATS; this agent is device {device!r} with its own
                           credentials (auth directory {auth}, removed on exit)

Try it (look at the x-agl-tier / x-agl-reason headers):
  curl -si {chat} -H 'content-type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "What is 2+2?"}}]}}'
  curl -si {chat} -H 'content-type: application/json' \\
    -d '{{"model": "{CLOUD_MODEL}", "messages": [{{"role": "user", "content": "Explain NATS in one line."}}]}}'
  curl -si {chat} -H 'content-type: application/json' -H 'x-agl-tier: cloud' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hi"}}], "stream": true}}'

Enroll another device on this machine while this runs, then start its agent:
  hubctl devices enroll dev-2 --dir {auth} --nats-url {nats_url} --out .
  AGL_DEVICE_ID=dev-2 AGL_HUB__NATS_URL={nats_url} AGL_HUB__CREDENTIALS=./dev-2.creds \\
    edge-agent run --port 8081
  or, with its own leaf node and Batch API:
  AGL_DEVICE_ID=dev-2 AGL_BATCHES__LEAF_REMOTE={site.leaf_remote} \\
    AGL_BATCHES__LEAF_CREDENTIALS=./dev-2.creds edge-agent run --port 8081 --embedded-leaf
  hubctl devices list --dir {auth} --nats-url {nats_url}

Ctrl-C stops everything (in-flight requests finish first).
"""


def edge_settings(
    opts: AllInOneOptions,
    nats_url: str,
    credentials: Path | None = None,
    site: LocalSite | None = None,
) -> EdgeSettings:
    """The agent's settings: the user's config and env, plus the hub link and demo routing.

    With ``site`` the agent is on its leaf (``nats_url``): batches wait in the leaf's domain,
    desired state is read from the hub's domain."""
    base = load_settings(opts.config_file, host=opts.host, port=opts.port, log_level=opts.log_level)
    routes_itself = base.router.rules or base.router.cascade.enabled
    router = base.router if routes_itself else demo_router(base.model_id)
    return load_settings(
        opts.config_file,
        host=opts.host,
        port=opts.port,
        log_level=opts.log_level,
        grpc_port=_grpc_port(opts, base),
        hub={
            **base.hub.model_dump(),
            "nats_url": nats_url,
            "credentials": credentials,  # the leaf is open on loopback; harmless there
            **({"jetstream_domain": site.hub_domain} if site else {}),
        },
        router=router,
        **({"batches": _batches(base, site)} if site else {}),
    )


def _batches(base: EdgeSettings, site: LocalSite) -> dict[str, Any]:
    return {**base.batches.model_dump(), "leaf_domain": site.domain, "hub_domain": site.hub_domain}


def _grpc_port(opts: AllInOneOptions, base: EdgeSettings) -> int:
    if opts.grpc_port is not None:
        return opts.grpc_port
    if base.grpc_port is not None:
        return base.grpc_port
    try:  # the conventional gRPC port, unless something else holds it
        socket.create_server((opts.host, DEFAULT_GRPC_PORT)).close()
    except OSError:
        return 0
    return DEFAULT_GRPC_PORT


def local_auth(root: Path, device: str) -> tuple[KeyStore, Path]:
    """Operator-mode auth in ``root`` with ``device`` enrolled: (the keys, its .creds)."""
    store = KeyStore(root)
    now = int(time.time())
    store.init(now=now)
    creds, _ = store.enroll(device, site="local", labels={}, out=root, now=now)
    return store, creds


async def run(opts: AllInOneOptions) -> None:
    """Start everything, serve until SIGINT/SIGTERM, then stop in reverse order.

    NATS runs in operator mode: the hub and the local agent each connect with their own
    credentials, as a fleet would (``hubctl auth init`` + ``hubctl devices enroll``).
    """
    base = load_settings(opts.config_file, host=opts.host, port=opts.port)
    refusal = bind_refusal(base.host, keys=base.api_keys, insecure=base.insecure_no_auth)
    if refusal is not None:
        raise click.ClickException(refusal)
    with tempfile.TemporaryDirectory(prefix="agl-auth-") as tmp:
        store, creds = local_auth(Path(tmp), base.device_id)
        with local_site(
            store.root, store, device=base.device_id, creds=creds, port=opts.nats_port
        ) as site:
            await _run_with(opts, store, creds, site)


async def _run_with(opts: AllInOneOptions, store: KeyStore, creds: Path, site: LocalSite) -> None:
    hub_settings = HubSettings(
        nats_url=site.hub_url,
        jetstream_domain=site.hub_domain,
        models=[
            HubModelSpec(
                name=CLOUD_MODEL,
                backend="gguf",
                path=bundled_model_path(),
                n_ctx=2048,
                n_threads=opts.hub_threads,
                n_gpu_layers=0,
            )
        ],
        log_level=opts.log_level,
        credentials=store.hub_creds,
    )
    async with running_hub(hub_settings):
        settings = edge_settings(opts, site.leaf_url, creds, site)
        registry = ModelRegistry(plan_models(settings), settings)
        app = create_app(settings, registry)
        try:
            sock = socket.create_server((settings.host, settings.port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; pick another --port"
            ) from exc
        url = f"http://{settings.host}:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            app,
            http=bounded_http_protocol(settings.max_header_bytes),
            log_level=settings.log_level,
            log_config=UVICORN_LOG_CONFIG,
            timeout_graceful_shutdown=int(settings.drain_timeout_s),
            access_log=False,
        )
        server = DrainingServer(config)

        async def announce() -> None:
            await asyncio.to_thread(registry.wait, 120)
            uplink = app.state.agent.uplink
            if uplink is not None:
                await uplink.wait_connected(10)
            grpc = f"{settings.host}:{app.state.agent.grpc_port}"
            banner = _banner(
                url,
                site,
                settings.model_id,
                grpc,
                device=settings.device_id,
                auth=store.root,
            )
            click.echo(banner, err=True)

        announcer = asyncio.create_task(announce())
        try:
            await server.serve(sockets=[sock])
        finally:
            announcer.cancel()
            sock.close()
