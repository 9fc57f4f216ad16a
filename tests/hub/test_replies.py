"""Reply framing: chunks, results and ``nats.micro`` error replies that ``$SRV.STATS`` counts."""

from __future__ import annotations

import json
from typing import Any

import nats

from cloud_hub.serving import HubService
from cloud_hub.serving.replies import StreamFramer, result_message
from cloud_hub.settings import HubModelSpec
from shared.protocol import ChunkMessage, EndMessage, ErrorMessage, decode_reply, encode
from shared.runtimes.types import Classification, GenerationEnd, TokenPiece
from shared.subjects import inbox_prefix, infer_subject
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import DEVICE, ECHO
from tests.fixtures.nats import NatsServer


async def hub_stats(url: str) -> dict[str, Any]:
    """Requests and errors over all endpoints, and every endpoint's last error.

    A request for a served model may land on the model's endpoint or on ``any-model``
    (same subject match, same queue group), so the tests count over both.
    """
    nc = await nats.connect(url)
    try:
        stats = json.loads((await nc.request("$SRV.STATS.agl-hub", b"", timeout=2)).data)
    finally:
        await nc.close()
    endpoints = stats["endpoints"]
    return {
        "num_requests": sum(e["num_requests"] for e in endpoints),
        "num_errors": sum(e["num_errors"] for e in endpoints),
        "last_errors": [e["last_error"] for e in endpoints],
    }


async def test_refused_request_is_a_micro_error_counted_in_srv_stats(
    echo_hub: HubService, nats_server: NatsServer
) -> None:
    before = await hub_stats(nats_server.url)
    nc = await nats.connect(nats_server.url, inbox_prefix=inbox_prefix(DEVICE))
    try:
        msg = await nc.request(infer_subject(DEVICE, ECHO), b"{not json", timeout=3)
    finally:
        await nc.close()
    assert msg.headers is not None and msg.headers["Nats-Service-Error-Code"] == "400"
    assert "not valid JSON" in msg.headers["Nats-Service-Error"]
    reply = decode_reply(msg.data)  # the body stays the JSON ErrorMessage the edge reads
    assert isinstance(reply, ErrorMessage) and reply.code == "bad_request"
    after = await hub_stats(nats_server.url)
    assert after["num_errors"] == before["num_errors"] + 1
    assert after["num_requests"] == before["num_requests"] + 1
    assert any(e.startswith("bad_request: request is not valid JSON") for e in after["last_errors"])


async def test_error_sent_by_a_request_task_is_counted_too(nats_server: NatsServer) -> None:
    slow = HubModelSpec(name=ECHO, backend="echo", echo_delay_s=0.5)
    async with serving_hub(hub_settings(nats_server.url, slow, request_timeout_s=0.1)):
        before = await hub_stats(nats_server.url)
        nc = await nats.connect(nats_server.url, inbox_prefix=inbox_prefix(DEVICE))
        try:
            msg = await nc.request(
                infer_subject(DEVICE, ECHO), encode(infer_request("a b")), timeout=3
            )
        finally:
            await nc.close()
        reply = decode_reply(msg.data)
        assert isinstance(reply, ErrorMessage) and reply.code == "timeout"
        after = await hub_stats(nats_server.url)
    assert after["num_errors"] == before["num_errors"] + 1
    assert any(e.startswith("timeout: the hub's deadline") for e in after["last_errors"])


def test_framer_holds_textless_tokens_until_text_arrives() -> None:
    framer = StreamFramer("r1")
    assert framer.feed("") is None  # nothing to send
    assert framer.feed(TokenPiece("", 4, logprob=-0.5)) is None  # text held back
    chunk = framer.feed(TokenPiece("Hi", 5, logprob=-0.25))
    assert isinstance(chunk, ChunkMessage) and (chunk.seq, chunk.text) == (0, "Hi")
    assert chunk.logprobs is not None and [e.logprob for e in chunk.logprobs] == [-0.5, -0.25]
    plain = framer.feed(" there")
    assert plain is not None and (plain.seq, plain.logprobs) == (1, None)
    assert framer.feed(TokenPiece("", 6, logprob=-2.0)) is None
    tail, end = framer.end(GenerationEnd("length", 3, 4))
    assert isinstance(tail, ChunkMessage) and (tail.seq, tail.text) == (2, "")
    assert tail.logprobs is not None and len(tail.logprobs) == 1
    assert isinstance(end, EndMessage) and end.seq == 3 and end.usage.completion_tokens == 4


def test_result_carries_text_logprobs_and_classifications() -> None:
    pieces = [TokenPiece("a", 1, logprob=-1.0), TokenPiece("b", -1)]
    found = (Classification(label="cat", probabilities={"cat": 0.9, "dog": 0.1}, confidence=0.9),)
    end = GenerationEnd("stop", 2, 1, classifications=found)
    msg = result_message(infer_request("x"), pieces, end)
    assert msg.text == "ab" and msg.usage.total_tokens == 3
    assert msg.logprobs is not None and [e.token for e in msg.logprobs] == ["ab"]
    assert msg.classifications is not None and msg.classifications[0].label == "cat"
