"""Bad messages get an ErrorMessage reply and the hub keeps serving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from cloud_hub.serving import HubService
from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import CloudUnavailable, Uplink
from shared.protocol import ErrorMessage, decode_reply, encode, infer_subject
from shared.subjects import inbox_prefix
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import DEVICE, ECHO
from tests.fixtures.nats import NatsServer


@pytest.fixture()
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A bare NATS connection for sending hand-made bytes."""
    conn = await nats.connect(nats_server.url, inbox_prefix=inbox_prefix(DEVICE))
    try:
        yield conn
    finally:
        await conn.close()


async def ask(nc: Client, data: bytes, model: str = ECHO) -> ErrorMessage:
    reply = decode_reply((await nc.request(infer_subject(DEVICE, model), data, timeout=3)).data)
    assert isinstance(reply, ErrorMessage)
    return reply


async def still_serves(uplink: Uplink) -> None:
    assert (await uplink.complete(infer_request("still here"), timeout=5)).text == "still here"


async def test_malformed_json_gets_bad_request(
    echo_hub: HubService, nc: Client, uplink: Uplink
) -> None:
    err = await ask(nc, b"{not json")
    assert err.code == "bad_request" and "not valid JSON" in err.message
    await still_serves(uplink)


async def test_invalid_utf8_gets_bad_request(echo_hub: HubService, nc: Client) -> None:
    err = await ask(nc, b'{"v": 1, "id": "\xff"}')
    assert err.code == "bad_request" and "UTF-8" in err.message


async def test_wrong_schema_names_the_field(
    echo_hub: HubService, nc: Client, uplink: Uplink
) -> None:
    data = json.dumps({"v": 1, "id": "x1", "device": "d", "model": ECHO, "kind": "chat"}).encode()
    err = await ask(nc, data)
    assert err.code == "bad_request" and "messages" in err.message
    await still_serves(uplink)


async def test_wrong_version_says_so(echo_hub: HubService, nc: Client) -> None:
    data = encode(infer_request("hi")).replace(b'"v":1', b'"v":2')
    err = await ask(nc, data)
    assert err.code == "bad_request" and "version 2" in err.message


async def test_oversize_request_gets_too_large(nats_server: NatsServer, nc: Client) -> None:
    settings = hub_settings(nats_server.url, max_request_bytes=1024)
    async with serving_hub(settings):
        err = await ask(nc, encode(infer_request("x" * 4000)))
        assert err.code == "too_large" and "1024" in err.message
        reply = decode_reply(
            (
                await nc.request(
                    infer_subject(DEVICE, ECHO), encode(infer_request("ok")), timeout=3
                )
            ).data
        )
        assert reply.type == "result"


async def test_unknown_model_gets_unknown_model(
    echo_hub: HubService, nc: Client, uplink: Uplink
) -> None:
    err = await ask(nc, encode(infer_request("hi", model="no-such-model")), model="no-such-model")
    assert err.code == "unknown_model" and ECHO in err.message
    with pytest.raises(CloudUnavailable) as info:
        await uplink.complete(infer_request("hi", model="no-such-model"), timeout=3)
    assert info.value.reason == "unknown_model"
    await still_serves(uplink)


async def test_full_worker_answers_busy_at_once(nats_server: NatsServer, uplink: Uplink) -> None:
    slow = HubModelSpec(name=ECHO, backend="echo", echo_delay_s=0.2)
    async with serving_hub(hub_settings(nats_server.url, slow, concurrency=1)):
        stream = uplink.stream(infer_request("a b c"), timeout=5, first_chunk_timeout=5)
        assert await anext(stream) == "a"
        with pytest.raises(CloudUnavailable) as info:
            await uplink.complete(infer_request("second"), timeout=1)
        assert info.value.reason == "busy"
        await stream.aclose()
