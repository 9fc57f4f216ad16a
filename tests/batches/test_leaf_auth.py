"""Batches across a leaf in operator mode: each site's leaf links with its device's credentials
(``device_permissions``), so only that device's batch traffic crosses its link.

A real hub-side nats-server (JWT auth, JetStream domain ``hub``), leaf ``site1`` linked with
dev-a's credentials (the site fixture) and leaf ``site2`` linked with dev-b's; bare nats-py
clients on each leaf stand where the agents would be. The hub's own credentials pull dev-a's
lines across the leaf the way its batch worker does (answers on dev-a's ``batch.pull`` subjects).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from cloud_hub.control.artifacts import push_artifact, signing_key
from cloud_hub.control.policy import materialize, open_config, set_layer
from edge_agent.control.artifact_cache import ArtifactCache
from edge_agent.control.watcher import DesiredWatcher
from shared.batch_wire import (
    AGENT_CONSUMER,
    HUB_CONSUMER,
    batch_stream,
    line_subject,
    lines_filter,
    pull_inbox,
    result_subject,
    results_stream,
)
from shared.desired import decode_record, layer_key
from shared.leaf import LeafConfig, render_leaf_config, running_nats_config
from tests.batches.site import Site, edge_site, enroll
from tests.fixtures.nats import NatsServer, free_port

A, B = "dev-a", "dev-b"
WASM = Path(__file__).resolve().parents[2] / "wasm_plugins"
REFUSED = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with edge_site(tmp_path_factory.mktemp("leaf-auth"), auth_device=A) as s:
        yield s


@pytest.fixture(scope="module")
def leaf_b(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A second site, linked straight to the hub side's leafnode port with dev-b's creds."""
    assert site.auth is not None
    tmp, port = tmp_path_factory.mktemp("leaf-b"), free_port()
    text = render_leaf_config(
        LeafConfig(
            domain="site2",
            store_dir=tmp / "js",
            remote_urls=[f"nats-leaf://127.0.0.1:{site.link.target}"],
            listen=f"127.0.0.1:{port}",
            credentials=enroll(site.auth, B),
        )
    )
    with running_nats_config(text, port=port, log_file=tmp / "leaf.log") as server:
        yield server


@contextlib.asynccontextmanager
async def connected(
    url: str, device: str | None, creds: Path | None = None
) -> AsyncIterator[Client]:
    inbox = f"_INBOX.{device}".encode() if device else b"_INBOX"
    nc = await nats.connect(url, inbox_prefix=inbox, user_credentials=creds and str(creds))
    try:
        yield nc
    finally:
        await nc.close()


async def _linked(nc: Client, device: str) -> None:
    """Wait until the leaf's link carries this device's hub JetStream calls."""
    js = nc.jetstream(domain="hub", timeout=0.5)
    for _ in range(100):
        try:
            await js.stream_info(results_stream(device))
            return
        except nats.js.errors.NotFoundError:
            return  # the hub's JetStream answered
        except REFUSED:
            await asyncio.sleep(0.1)
    raise AssertionError(f"the leaf of {device} never linked to the hub")


async def test_devices_reach_only_their_own_batch_streams_across_leaves(
    site: Site, leaf_b: NatsServer
) -> None:
    assert site.auth is not None
    async with (
        connected(site.leaf.url, A) as on_a,
        connected(leaf_b.url, B) as on_b,
        connected(site.hub_nats.url, None, site.auth.hub_creds) as hub,
    ):
        await _linked(on_a, A)
        await _linked(on_b, B)
        # dev-a's lines wait on its leaf (as the agent's store keeps them); one result on the hub
        a_js, hub_js = on_a.jetstream(domain=site.domain), hub.jetstream(domain=site.hub_domain)
        await a_js.add_stream(StreamConfig(name=batch_stream(A), subjects=[lines_filter(A)]))
        await a_js.add_consumer(
            batch_stream(A),
            ConsumerConfig(durable_name=HUB_CONSUMER, ack_policy=AckPolicy.EXPLICIT),
        )
        for i in range(3):
            await a_js.publish(line_subject(A, f"b{i}"), b"line", stream=batch_stream(A))
        await hub_js.add_stream(
            StreamConfig(name=results_stream(A), subjects=[result_subject(A, ">")])
        )
        await hub_js.add_consumer(
            results_stream(A),
            ConsumerConfig(durable_name=AGENT_CONSUMER, ack_policy=AckPolicy.EXPLICIT),
        )
        await hub_js.publish(result_subject(A, "b0"), b"result", stream=results_stream(A))

        # dev-b, through its own leaf, cannot see, pull or ack dev-a's lines or results
        seen_by_b: list[str] = []

        async def spy(msg: Msg) -> None:
            if msg.data != b"from dev-b":  # its own forgery, delivered on its own leaf
                seen_by_b.append(msg.subject)

        for subject in (f"{pull_inbox(A)}>", "$JS.ACK.>", f"agl.v1.dev.{A}.>"):
            await on_b.subscribe(subject, cb=spy)
        b_site1 = on_b.jetstream(domain=site.domain, timeout=1.0)
        with pytest.raises(REFUSED):
            await b_site1.stream_info(batch_stream(A))
        with pytest.raises(REFUSED):
            sub = await b_site1.pull_subscribe_bind(HUB_CONSUMER, stream=batch_stream(A))
            await sub.fetch(3, timeout=1.0)
        b_hub = on_b.jetstream(domain="hub", timeout=1.0)
        with pytest.raises(REFUSED):
            await b_hub.stream_info(results_stream(A))
        with pytest.raises(REFUSED):
            sub = await b_hub.pull_subscribe_bind(AGENT_CONSUMER, stream=results_stream(A))
            await sub.fetch(1, timeout=1.0)
        # nor answer the hub's pulls of dev-a's lines: a forged line never reaches the hub
        forged: list[bytes] = []

        async def hub_got(msg: Msg) -> None:
            forged.append(msg.data)

        await hub.subscribe(f"{pull_inbox(A)}forged", cb=hub_got)
        await hub.flush()
        await asyncio.sleep(0.3)  # the hub's interest reaches the leaves
        await on_b.publish(f"{pull_inbox(A)}forged", b"from dev-b")
        await on_a.publish(f"{pull_inbox(A)}forged", b"from dev-a")  # control: dev-a may
        await on_a.flush()
        await on_b.flush()

        # the hub pulls and acks dev-a's lines across dev-a's leaf; dev-a reads its result
        pull = await hub.jetstream(domain=site.domain).pull_subscribe_bind(
            HUB_CONSUMER, stream=batch_stream(A), inbox_prefix=pull_inbox(A).encode()
        )
        lines = await pull.fetch(3, timeout=5.0)
        assert [m.data for m in lines] == [b"line"] * 3
        for m in lines:
            await m.ack()  # as the hub's worker does (a double ack's reply would need _INBOX)
        await hub.flush()
        mine = await on_a.jetstream(domain="hub").pull_subscribe_bind(
            AGENT_CONSUMER, stream=results_stream(A)
        )
        [result] = await mine.fetch(1, timeout=5.0)
        assert result.data == b"result"
        await result.ack_sync(timeout=5.0)

        async def state() -> tuple[int, int, int]:
            info = await a_js.consumer_info(batch_stream(A), HUB_CONSUMER)
            return info.num_pending, info.num_ack_pending, info.delivered.stream_seq

        for _ in range(50):  # the acks cross the link
            if await state() == (0, 0, 3):
                break
            await asyncio.sleep(0.1)
        assert await state() == (0, 0, 3)
        assert forged == [b"from dev-a"]
        assert seen_by_b == []


async def test_desired_state_and_artifacts_reach_an_agent_on_the_leaf(
    site: Site, tmp_path: Path
) -> None:
    """With the agent on a leaf, plain ``$JS.API`` is the leaf's own JetStream: the watcher and the
    artifact reads address the hub's (``hub.jetstream_domain``), as dev-a's creds allow."""
    assert site.auth is not None
    async with (
        connected(site.leaf.url, A) as on_a,
        connected(site.hub_nats.url, None, site.auth.hub_creds) as hub,
    ):
        await _linked(on_a, A)
        hub_js = hub.jetstream(domain=site.hub_domain)
        signer = signing_key(tmp_path / "keys")
        row = await push_artifact(
            hub_js, kind="plugin", path=WASM / "pii_redact.wasm", signer=signer,
            manifest=WASM / "pii_redact.plugin.toml",
        )  # fmt: skip
        kv = await open_config(hub)
        await set_layer(kv, layer_key(device=A), {"router": {"load_slo_s": 3.0}})
        await materialize(kv, A, None)

        cache = ArtifactCache(tmp_path / "cache", max_bytes=1 << 24, trusted=[signer.public])
        got = await cache.fetch(on_a.jetstream(domain="hub"), kind="plugin", sha256=row.sha256)
        assert got.path.read_bytes() == (WASM / "pii_redact.wasm").read_bytes()

        watcher = DesiredWatcher(device=A, connection=lambda: on_a, applier=None, domain="hub")  # type: ignore[arg-type]
        assert await watcher._read_key(on_a) is not None  # direct get across the leaf
        seen: list[bytes] = []

        async def on_msg(msg: Msg) -> None:
            seen.append(msg.data)

        watcher._on_msg = on_msg  # type: ignore[method-assign]
        await watcher._watch(on_a)  # the watch the agent makes, created in the hub's domain
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen and decode_record(seen[0]).state == {"router": {"load_slo_s": 3.0}}
        # the same reads without the domain go to the leaf's JetStream, which has no such bucket
        plain = DesiredWatcher(device=A, connection=lambda: on_a, applier=None)  # type: ignore[arg-type]
        with pytest.raises(nats.errors.NoRespondersError):  # no stream there to answer
            await plain._read_key(on_a)
        await watcher._unwatch()
