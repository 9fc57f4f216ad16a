"""Tool calls streamed as they are generated: the scanner's events, piece by piece (pure)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from edge_agent.api.formatter import CompletionFormat, sse_answer
from edge_agent.execute.events import Event, GenerationEnd, Pieces, Start, TokenPiece
from shared.tool_calls import ToolSpec
from shared.tool_stream import ArgsDelta, CallScanner, CallStart

TWO = (
    '{ "tool_calls": [{"name": "get_weather", "arguments": {"city": "Pa\\"ris}", "n": [1, {"a": 2}]}},'
    ' {"arguments": {"x": 1}, "name": "now"}]}'
)


def scan(text: str, step: int) -> list[CallStart | ArgsDelta]:
    scanner = CallScanner()
    return [e for at in range(0, len(text), step) for e in scanner.feed(text[at : at + step])]


def joined(events: list[CallStart | ArgsDelta]) -> tuple[list[str], dict[int, str]]:
    names = [e.name for e in events if isinstance(e, CallStart)]
    args: dict[int, str] = {}
    for e in events:
        if isinstance(e, ArgsDelta):
            args[e.index] = args.get(e.index, "") + e.text
    return names, args


def test_any_split_gives_the_same_calls() -> None:
    expected = json.loads(TWO)["tool_calls"]
    for step in (1, 2, 3, 7, len(TWO)):
        names, args = joined(scan(TWO, step))
        assert names == ["get_weather", "now"]
        assert [json.loads(args[i]) for i in (0, 1)] == [c["arguments"] for c in expected]


def test_arguments_stream_before_the_call_ends() -> None:
    events = scan(TWO, 4)
    first_args = [e for e in events if isinstance(e, ArgsDelta) and e.index == 0]
    assert len(first_args) > 3  # many deltas, not one at the end
    assert isinstance(events[0], CallStart) and events[0].name == "get_weather"


def test_arguments_before_the_name_wait_for_it() -> None:
    events = scan(TWO, 1)
    second = events.index(CallStart(1, "now"))
    assert events[second + 1] == ArgsDelta(1, '{"x": 1}')  # held, then sent after the start


def test_string_arguments_are_not_streamed() -> None:
    names, args = joined(scan('{"tool_calls":[{"name":"f","arguments":"{\\"a\\":1}"}]}', 5))
    assert names == ["f"] and args == {}


async def events(*items: Event) -> AsyncIterator[Event]:
    for item in items:
        yield item


async def test_the_formatter_sends_deltas_as_pieces_come() -> None:
    spec = ToolSpec.make(
        [{"name": "get_weather", "parameters": {"type": "object"}}, {"name": "now"}],
        choice="required",
        parallel=True,
    )
    fmt = CompletionFormat(model="m", chat=True, include_usage=False, logprobs=False, tools=spec)
    pieces = [Pieces([TokenPiece(TWO[at : at + 6], 1)]) for at in range(0, len(TWO), 6)]
    out = [
        c async for c in sse_answer(events(Start("m"), *pieces, GenerationEnd("stop", 1, 9)), fmt)
    ]
    body = [
        json.loads(line[6:])
        for c in out
        for line in c.decode().split("\n\n")
        if line.startswith("data: {")
    ]
    deltas = [
        b["choices"][0]["delta"]["tool_calls"][0]
        for b in body
        if b["choices"][0]["delta"].get("tool_calls")
    ]
    starts = [d for d in deltas if "id" in d]
    assert [(d["index"], d["function"]["name"], d["function"]["arguments"]) for d in starts] == [
        (0, "get_weather", ""),
        (1, "now", ""),
    ]
    assert len({d["id"] for d in starts}) == 2
    args = {
        i: "".join(d["function"]["arguments"] for d in deltas if d["index"] == i) for i in (0, 1)
    }
    assert json.loads(args[0]) == {"city": 'Pa"ris}', "n": [1, {"a": 2}]} and json.loads(
        args[1]
    ) == {"x": 1}
    assert len(out) > 5  # sent piece by piece, not in one go at the end
    assert body[-1]["choices"][0]["finish_reason"] == "tool_calls"
