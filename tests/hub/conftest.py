"""Fixtures for the hub tests: a real nats-server, in-process hubs, a connected Uplink."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import nats
import nats.errors
import pytest

from cloud_hub.backends import Backend
from cloud_hub.serving import HubService, running_hub
from cloud_hub.settings import HubModelSpec, HubSettings
from edge_agent.uplink import CircuitBreaker, Uplink
from shared.protocol import ChatTurn, InferParams, InferRequest
from tests.nats_server import NatsServer
from tests.nats_server import nats_server as start_nats_server

ECHO = "echo-test"
GGUF = "smollm2-hub"
_ids = itertools.count()


def hub_settings(url: str, *models: HubModelSpec, **extra: Any) -> HubSettings:
    """Settings for an in-process hub on ``url``; echo model unless ``models`` are given."""
    specs = list(models) or [HubModelSpec(name=ECHO, backend="echo")]
    return HubSettings(nats_url=url, models=specs, drain_timeout_s=2.0, **extra)


def chat(text: str, *, model: str = ECHO, stream: bool = False, **params: Any) -> InferRequest:
    """A chat request with a fresh id."""
    return InferRequest(
        id=f"t{next(_ids)}",
        device="dev-test",
        model=model,
        kind="chat",
        messages=[ChatTurn(role="user", content=text)],
        params=InferParams(**params),
        stream=stream,
    )


async def wait_serving(url: str, models: list[str], timeout: float = 10.0) -> None:
    """Wait until each model's subject answers a request from another connection.

    nats-server (2.15) now and then answers "no responders" to the first request that
    follows a fresh subscription from another connection, so tests probe before they start.
    """
    nc = await nats.connect(url)
    try:
        async with asyncio.timeout(timeout):
            for model in models:
                while True:
                    try:
                        await nc.request(f"agl.v1.infer.{model}", b"probe", timeout=2)
                        break
                    except nats.errors.NoRespondersError:
                        await asyncio.sleep(0.01)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def serving_hub(
    settings: HubSettings, *, backends: Mapping[str, Backend] | None = None
) -> AsyncIterator[HubService]:
    """``running_hub`` that returns only once NATS routes requests to it."""
    async with running_hub(settings, backends=backends) as hub:
        await wait_serving(settings.nats_url, sorted(hub.backends))
        yield hub


@pytest.fixture()
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free port."""
    with start_nats_server() as server:
        yield server


@pytest.fixture()
async def echo_hub(nats_server: NatsServer) -> AsyncIterator[HubService]:
    """An in-process hub serving the ECHO stand-in back-end as model ``echo-test``."""
    async with serving_hub(hub_settings(nats_server.url)) as hub:
        yield hub


@pytest.fixture()
async def gguf_hub(nats_server: NatsServer) -> AsyncIterator[HubService]:
    """An in-process hub serving the bundled SmolLM2 GGUF (n_ctx 512) as ``smollm2-hub``."""
    # One thread: llama.cpp threads spin, and on 2 cores they would starve the event loop.
    spec = HubModelSpec(name=GGUF, backend="gguf", n_ctx=512, n_gpu_layers=0, n_threads=1)
    async with serving_hub(hub_settings(nats_server.url, spec)) as hub:
        yield hub


@pytest.fixture()
async def uplink(nats_server: NatsServer) -> AsyncIterator[Uplink]:
    """An Uplink connected to the test server (breaker: 3 failures, 0.2 s cooldown)."""
    link = Uplink(
        nats_server.url,
        device="dev-test",
        breaker=CircuitBreaker(failure_threshold=3, cooldown_s=0.2),
    )
    await link.connect()
    assert await link.wait_connected(5.0)
    try:
        yield link
    finally:
        await link.close()
