"""The hub's GGUF back-end decodes concurrent requests together; streams are coalesced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cloud_hub.backends import build_backend
from cloud_hub.serving import HubService
from cloud_hub.serving.pacing import coalesced
from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import Uplink
from shared.protocol import ChunkMessage, EndMessage
from tests.fixtures.hubs import infer_request
from tests.fixtures.names import GGUF

QUESTIONS = ["Say hello.", "Name a colour.", "Count to five.", "Name a fruit."]


async def test_concurrent_requests_all_complete_with_their_own_answers(
    gguf_hub: HubService, uplink: Uplink
) -> None:
    backend = gguf_hub.backends[GGUF]
    assert getattr(backend, "slots", None) == gguf_hub.settings.concurrency

    async def ask(question: str) -> str:
        req = infer_request(question, model=GGUF, max_tokens=12, temperature=0)
        return (await uplink.complete(req, timeout=120)).text

    alone = [await ask(q) for q in QUESTIONS]
    together = await asyncio.gather(*(ask(q) for q in QUESTIONS))  # concurrency 4
    assert list(together) == alone


async def test_concurrent_streams_end_with_their_text(gguf_hub: HubService, uplink: Uplink) -> None:
    async def stream(question: str) -> tuple[str, EndMessage | None]:
        req = infer_request(question, model=GGUF, max_tokens=12, temperature=0, stream=True)
        text, end = "", None
        async for msg in uplink.stream_messages(req, timeout=120, first_chunk_timeout=120):
            if isinstance(msg, ChunkMessage):
                text += msg.text
            elif isinstance(msg, EndMessage):
                end = msg
        return text, end

    complete = [
        (
            await uplink.complete(
                infer_request(q, model=GGUF, max_tokens=12, temperature=0), timeout=120
            )
        ).text
        for q in QUESTIONS
    ]
    results = await asyncio.gather(*(stream(q) for q in QUESTIONS))
    assert [t for t, _ in results] == complete
    assert all(end is not None and end.usage.completion_tokens > 0 for _, end in results)


def test_concurrency_is_the_gguf_slot_count() -> None:
    spec = HubModelSpec(name="m", backend="gguf", n_ctx=256, n_gpu_layers=-1)
    backend = build_backend(spec, slots=7)
    assert getattr(backend, "slots", None) == 7


async def _burst_source(sizes: list[int], *, fail_after: int | None = None) -> AsyncIterator[int]:
    """Yields ``sizes[i]`` numbers at once (no pause), then pauses, for each i."""
    n = 0
    for size in sizes:
        for _ in range(size):
            if fail_after is not None and n == fail_after:
                raise ValueError("back-end broke")
            yield n
            n += 1
        await asyncio.sleep(0.05)


async def test_coalesced_sends_what_arrived_together_as_one_burst() -> None:
    bursts = [b async for b in coalesced(_burst_source([1, 5, 3]), 0.01)]
    assert [x for b in bursts for x in b] == list(range(9))
    # Each group arrives at once while the reader waits: one burst per group (never split).
    assert len(bursts) <= 3 and bursts[0] == [0]


async def test_coalesced_with_interval_0_passes_each_event() -> None:
    assert [b async for b in coalesced(_burst_source([3]), 0)] == [[0], [1], [2]]


async def test_coalesced_delivers_what_came_before_a_failure_then_raises() -> None:
    got: list[int] = []
    with pytest.raises(ValueError, match="back-end broke"):
        async for burst in coalesced(_burst_source([2, 2], fail_after=3), 0.01):
            got.extend(burst)
    assert got == [0, 1, 2]
