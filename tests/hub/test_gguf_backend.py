"""The hub serving the real bundled SmolLM2 GGUF through llama.cpp."""

from __future__ import annotations

import asyncio
from typing import Any

from cloud_hub.serving import HubService
from edge_agent.uplink import Uplink
from shared.protocol import ChunkMessage, EndMessage, InferParams, InferRequest
from tests.fixtures.hubs import infer_request
from tests.fixtures.names import GGUF


async def test_gguf_completes_a_chat(gguf_hub: HubService, uplink: Uplink) -> None:
    req = infer_request("Say hello.", model=GGUF, max_tokens=8, temperature=0)
    result = await uplink.complete(req, timeout=30)
    assert result.text.strip()
    assert 0 < result.usage.completion_tokens <= 8
    assert result.usage.prompt_tokens > 0


async def test_cancel_stops_generation_on_the_hub(gguf_hub: HubService, uplink: Uplink) -> None:
    req = InferRequest(
        id="cancel-me",
        device="dev-test",
        model=GGUF,
        kind="completion",
        prompt="1, 2, 3, 4, 5, 6, 7, 8,",
        params=InferParams(max_tokens=400, temperature=0),
        stream=True,
    )
    stream = uplink.stream(req, timeout=10, first_chunk_timeout=30)
    for _ in range(3):
        await anext(stream)
    await stream.aclose()  # publishes agl.v1.cancel.cancel-me
    async with asyncio.timeout(10):
        while not gguf_hub.finished:
            await asyncio.sleep(0.02)
    done = gguf_hub.finished[-1]
    assert done.id == "cancel-me"
    assert done.finish_reason == "cancelled"
    assert done.completion_tokens < 400


async def test_context_overflow_is_a_bad_request(gguf_hub: HubService, uplink: Uplink) -> None:
    from edge_agent.uplink import CloudFailed

    req = infer_request("word " * 600, model=GGUF, max_tokens=8)
    try:
        await uplink.complete(req, timeout=30)
    except CloudFailed as exc:
        assert exc.code == "bad_request" and "context" in str(exc)
    else:
        raise AssertionError("a prompt longer than n_ctx must be refused")


async def test_logprobs_travel_with_results_and_streams(
    gguf_hub: HubService, uplink: Uplink
) -> None:
    params: dict[str, Any] = {"max_tokens": 8, "temperature": 0, "logprobs": True}
    req = infer_request("Say hello.", model=GGUF, top_logprobs=2, **params)
    result = await uplink.complete(req, timeout=30)
    assert result.logprobs is not None
    assert len(result.logprobs) == result.usage.completion_tokens
    assert "".join(e.token for e in result.logprobs) == result.text
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in result.logprobs)

    chunks: list[ChunkMessage] = []
    req = infer_request("Say hello.", model=GGUF, stream=True, **params)
    end: EndMessage | None = None
    async for msg in uplink.stream_messages(req, timeout=30, first_chunk_timeout=30):
        if isinstance(msg, EndMessage):
            end = msg
        else:
            chunks.append(msg)
    text = "".join(c.text for c in chunks)
    assert text == result.text  # greedy: the same answer both ways
    for chunk in chunks:  # one entry per token of the chunk, joining to its text
        assert chunk.logprobs and "".join(e.token for e in chunk.logprobs) == chunk.text
    assert end is not None
    assert sum(len(c.logprobs or []) for c in chunks) == end.usage.completion_tokens
