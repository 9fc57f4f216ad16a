"""The one formatter: events → OpenAI JSON or SSE; an answer cut short never looks complete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from edge_agent.api.formatter import CompletionFormat, json_answer, sse_answer
from edge_agent.errors import ApiError
from edge_agent.execute.cloud import _end
from edge_agent.execute.events import Event, Failure, GenerationEnd, Pieces, Start, TokenPiece
from shared.protocol import EndMessage, ResultMessage, Usage


async def events(*items: Event) -> AsyncIterator[Event]:
    for item in items:
        yield item


def fmt(chat: bool = True) -> CompletionFormat:
    return CompletionFormat(model="m", chat=chat, include_usage=True, logprobs=False)


def answer(end: GenerationEnd) -> tuple[Event, ...]:
    return (Start("m"), Pieces([TokenPiece("Hel", 1), TokenPiece("lo", 2)]), end)


async def sse_text(*items: Event) -> str:
    return b"".join([c async for c in sse_answer(events(*items), fmt())]).decode()


async def test_a_whole_answer_renders_as_json_with_usage() -> None:
    body = await json_answer(events(*answer(GenerationEnd("length", 3, 2))), fmt())
    assert body["choices"][0]["message"]["content"] == "Hello"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


async def test_a_whole_stream_ends_with_usage_and_done() -> None:
    text = await sse_text(*answer(GenerationEnd("stop", 3, 2)))
    chunks = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == (
        "Hello"
    )
    assert chunks[-1]["usage"]["total_tokens"] == 5
    assert text.endswith("data: [DONE]\n\n")


async def test_a_cancelled_answer_is_an_error_not_a_stop() -> None:
    with pytest.raises(ApiError) as caught:
        await json_answer(events(*answer(GenerationEnd("cancelled", 3, 1))), fmt())
    assert (caught.value.status, caught.value.code) == (502, "incomplete")
    text = await sse_text(*answer(GenerationEnd("cancelled", 3, 1)))
    assert (
        '"code":"incomplete"' in text
        and "[DONE]" not in text
        and 'finish_reason":"stop' not in text
    )


async def test_a_failure_mid_stream_is_an_error_event() -> None:
    text = await sse_text(Start("m"), Pieces([TokenPiece("a", 1)]), Failure(504, "timeout", "late"))
    assert '"code":"timeout"' in text and "[DONE]" not in text
    with pytest.raises(ApiError) as caught:
        await json_answer(events(Start("m"), Failure(504, "timeout", "late")), fmt())
    assert caught.value.status == 504


@pytest.mark.parametrize(
    ("reason", "want"),
    [("stop", "stop"), ("length", "length"), ("cancelled", "cancelled"), ("error", "cancelled")],
)
def test_the_hubs_finish_reasons_map_to_complete_or_cut_short(reason: str, want: str) -> None:
    usage = Usage(prompt_tokens=1, completion_tokens=1)
    assert _end(EndMessage(id="r", seq=1, finish_reason=reason, usage=usage)).finish_reason == want
    result = ResultMessage(id="r", model="m", text="x", finish_reason=reason, usage=usage)
    assert _end(result).finish_reason == want
