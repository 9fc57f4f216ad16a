"""Request/reply and streaming through a real nats-server and an in-process hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

import nats

from cloud_hub.backends import BackendEvent, RequestContext
from cloud_hub.backends.echo import EchoBackend
from cloud_hub.serving import HubService
from edge_agent.uplink import Uplink
from shared.protocol import EndMessage, InferRequest
from shared.subjects import hub_infer_wildcard
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import ECHO
from tests.fixtures.nats import NatsServer


async def test_complete_returns_the_echoed_text_and_usage(
    echo_hub: HubService, uplink: Uplink
) -> None:
    result = await uplink.complete(infer_request("hello there hub"), timeout=5)
    assert result.text == "hello there hub"
    assert result.finish_reason == "stop"
    assert result.usage.completion_tokens == 3
    assert uplink.budget.spent == result.usage.total_tokens
    assert uplink.breaker.state == "closed"


async def test_stream_yields_chunks_in_order_then_end(echo_hub: HubService, uplink: Uplink) -> None:
    pieces = [
        p
        async for p in uplink.stream(
            infer_request("one two three"), timeout=5, first_chunk_timeout=5
        )
    ]
    assert pieces[:-1] == ["one", " two", " three"]
    end = pieces[-1]
    assert isinstance(end, EndMessage)
    assert end.seq == 3 and end.finish_reason == "stop"


async def test_max_tokens_limits_the_answer(echo_hub: HubService, uplink: Uplink) -> None:
    result = await uplink.complete(infer_request("a b c d e", max_tokens=2), timeout=5)
    assert result.text == "a b"
    assert result.finish_reason == "length"


class HeaderRecordingEcho(EchoBackend):
    """Stands in for a model back-end and records the headers each request carried."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[dict[str, str]] = []

    async def run(
        self, req: InferRequest, ctx: RequestContext
    ) -> AsyncGenerator[BackendEvent, None]:
        self.seen.append(dict(ctx.headers))
        async for event in super().run(req, ctx):
            yield event


async def test_traceparent_header_reaches_the_backend(
    nats_server: NatsServer, uplink: Uplink
) -> None:
    backend = HeaderRecordingEcho(ECHO)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with serving_hub(hub_settings(nats_server.url), backends={ECHO: backend}):
        await uplink.complete(infer_request("hi"), timeout=5, traceparent=tp)
        async for _ in uplink.stream(
            infer_request("hi"), timeout=5, first_chunk_timeout=5, traceparent=tp
        ):
            pass
    assert [h.get("traceparent") for h in backend.seen] == [tp, tp]


async def test_two_workers_share_the_load(nats_server: NatsServer, uplink: Uplink) -> None:
    settings = hub_settings(nats_server.url, concurrency=64)
    async with serving_hub(settings) as first, serving_hub(settings) as second:
        await asyncio.gather(
            *(uplink.complete(infer_request(f"req {i}"), timeout=5) for i in range(40))
        )
        assert len(first.finished) + len(second.finished) == 40
        assert first.finished and second.finished


async def test_micro_ping_and_info_find_the_hub(
    echo_hub: HubService, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        ping = json.loads((await nc.request("$SRV.PING.agl-hub", b"", timeout=2)).data)
        info = json.loads((await nc.request("$SRV.INFO.agl-hub", b"", timeout=2)).data)
    finally:
        await nc.close()
    assert ping["name"] == "agl-hub" and ping["id"] == echo_hub.service_id
    subjects = {e["subject"] for e in info["endpoints"]}
    assert hub_infer_wildcard(ECHO) in subjects
    assert {e["queue_group"] for e in info["endpoints"]} == {"hub"}
