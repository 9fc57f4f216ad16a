"""Logprobs conformance: each token's own bytes, ``text_offset``, and tool-call shapes (pure)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from edge_agent.api.formatter import CompletionFormat, json_answer, sse_answer
from edge_agent.errors import ApiError
from edge_agent.execute.events import Event, GenerationEnd, Pieces, Start, TokenPiece
from shared.protocol import token_pieces, wire_logprobs
from shared.tool_calls import ToolSpec

# "’" is b"\xe2\x80\x99": two tokens, the first releases no text (partial UTF-8).
QUOTE = [
    TokenPiece("", 5, logprob=-0.5, raw=b"\xe2\x80"),
    TokenPiece("’s", 6, logprob=-0.25, raw=b"\x99s"),
]


async def events(*items: Event) -> AsyncIterator[Event]:
    for item in items:
        yield item


def test_chat_logprobs_give_each_token_its_own_bytes() -> None:
    entries = CompletionFormat.chat_logprobs(QUOTE)
    assert [e["token"] for e in entries] == ["bytes:\\xe2\\x80", "bytes:\\x99\\x73"]
    assert [e["bytes"] for e in entries] == [[0xE2, 0x80], [0x99, ord("s")]]
    assert bytes(b for e in entries for b in e["bytes"]).decode() == "’s"
    assert all(e["token"] for e in entries)  # no empty token


def test_whole_tokens_keep_their_text() -> None:
    (entry,) = CompletionFormat.chat_logprobs([TokenPiece(" hi", 1, logprob=-1.0, raw=b" hi")])
    assert (entry["token"], entry["bytes"]) == (" hi", list(b" hi"))


def test_text_offsets_count_the_echo_and_untokenised_text() -> None:
    fmt = CompletionFormat(model="m", chat=False, include_usage=False, logprobs=True, echo="Hi")
    pieces = [
        TokenPiece(" a", 1, logprob=-1.0, raw=b" a"),
        TokenPiece("xy", -1),  # released at the end, no token of its own
        TokenPiece("", 2, logprob=-1.0, raw=b"\xe2\x80"),
        TokenPiece("’", 3, logprob=-1.0, raw=b"\x99"),
    ]
    body = fmt.full(pieces, GenerationEnd("stop", 1, 3))
    lp = body["choices"][0]["logprobs"]
    assert body["choices"][0]["text"] == "Hi axy’"
    assert lp["text_offset"] == [2, 6, 6]
    assert lp["tokens"] == [" a", "bytes:\\xe2\\x80", "bytes:\\x99"]


async def test_streamed_text_offsets_start_after_the_echo() -> None:
    fmt = CompletionFormat(model="m", chat=False, include_usage=False, logprobs=True, echo="Hi")
    pieces = [TokenPiece(" a", 1, logprob=-1.0), TokenPiece(" b", 2, logprob=-1.0)]
    chunks = [
        c
        async for c in sse_answer(
            events(Start("m"), Pieces(pieces[:1]), Pieces(pieces[1:]), GenerationEnd("stop", 1, 2)),
            fmt,
        )
    ]
    offsets = [
        json.loads(line[6:])["choices"][0]["logprobs"]["text_offset"]
        for c in chunks
        for line in c.decode().split("\n\n")
        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["logprobs"]
    ]
    assert offsets == [[], [2], [4]]  # the echo chunk, then " a" at 2 and " b" at 4


def test_token_bytes_travel_over_the_wire() -> None:
    wire = wire_logprobs(QUOTE)
    assert wire is not None and [w.bytes for w in wire] == [[0xE2, 0x80], [0x99, ord("s")]]
    back = token_pieces("’s", wire)
    assert [p.raw for p in back] == [b"\xe2\x80", b"\x99s"]


TOOLS = ToolSpec.make(
    [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}],
    choice="auto",
    parallel=True,
)


def tool_fmt() -> CompletionFormat:
    return CompletionFormat(model="m", chat=True, include_usage=False, logprobs=False, tools=TOOLS)


def answer(text: str, finish: str = "stop") -> tuple[Event, ...]:
    return (
        Start("m"),
        Pieces([TokenPiece(text[:3], 1), TokenPiece(text[3:], 2)]),
        GenerationEnd(finish, 1, 2),
    )  # type: ignore[arg-type]


async def test_a_call_renders_as_tool_calls() -> None:
    body = await json_answer(
        events(*answer('{"tool_calls":[{"name":"f","arguments":{"n":3}}]}')), tool_fmt()
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "f", "arguments": '{"n":3}'} and call["type"] == "function"


async def test_prose_stays_prose_streamed() -> None:
    text = b"".join(
        [c async for c in sse_answer(events(*answer("Hello there")), tool_fmt())]
    ).decode()
    deltas = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas) == "Hello there"
    assert deltas[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_streamed_call_sends_name_then_argument_deltas() -> None:
    text = b"".join(
        [
            c
            async for c in sse_answer(
                events(*answer('{"tool_calls":[{"name":"f","arguments":{"n":3}}]}')), tool_fmt()
            )
        ]
    ).decode()
    deltas = [
        json.loads(line[6:])["choices"][0]
        for line in text.split("\n\n")
        if line.startswith("data: {")
    ]
    calls = [d["delta"]["tool_calls"][0] for d in deltas if d["delta"].get("tool_calls")]
    assert calls[0]["function"] == {"name": "f", "arguments": ""} and calls[0]["id"].startswith(
        "call_"
    )
    assert "".join(c["function"]["arguments"] for c in calls[1:]) == '{"n":3}'
    assert all(c["index"] == 0 for c in calls)
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("text", "finish", "says"),
    [
        ('{"tool_calls":[{"name":"g","arguments":{}}]}', "stop", "'g'"),
        ('{"tool_calls":[{"name":"f","arguments":{"n":"x"}}]}', "stop", "break its schema"),
        ('{"tool_calls":[{"name":"f","argu', "length", "raise max_tokens"),
    ],
)
async def test_a_malformed_call_is_an_error_never_a_broken_call(
    text: str, finish: str, says: str
) -> None:
    with pytest.raises(ApiError) as err:
        await json_answer(events(*answer(text, finish)), tool_fmt())
    assert err.value.status == 502 and err.value.code == "malformed_tool_call"
    assert says in err.value.message
    streamed = b"".join(
        [c async for c in sse_answer(events(*answer(text, finish)), tool_fmt())]
    ).decode()
    # A stream may have sent part of the call; it ends with the error, never as a finished call.
    assert streamed.rstrip().endswith('"code":"malformed_tool_call"}}')
    assert "[DONE]" not in streamed and '"finish_reason":"tool_calls"' not in streamed
    assert '"name":"g"' not in streamed  # an undeclared function is never named
