"""Tool calling with the real bundled model and the official client: calls, streams, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tests.fixtures.agents import RunningAgent
from tests.fixtures.calls import oai
from tests.fixtures.names import MODEL

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 20}},
    "required": ["zone"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": WEATHER,
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture()
def client(agent: RunningAgent) -> Iterator[openai.OpenAI]:
    """The official client with room for slow generations on a loaded machine."""
    with oai(agent, timeout=300) as slow:
        yield slow


def _check_call(name: str, arguments: str, call_id: str) -> None:
    assert call_id.startswith("call_")
    assert name in SCHEMAS
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_required_returns_a_valid_call(client: openai.OpenAI) -> None:
    for seed in range(2):
        resp = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            max_tokens=160,
            seed=seed,
        )
        choice = resp.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        calls = choice.message.tool_calls or []
        assert len(calls) >= 1
        for call in calls:
            assert call.type == "function"
            _check_call(call.function.name, call.function.arguments, call.id)


def test_streamed_required_call_reassembles_from_deltas(client: openai.OpenAI) -> None:
    for seed in range(2):
        stream = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=96,
            seed=seed,
            stream=True,
        )
        calls: dict[int, dict[str, str]] = {}
        finish = None
        first_deltas = []
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            for tc in delta.tool_calls or []:
                if tc.id is not None:
                    first_deltas.append(tc)
                    assert tc.function is not None and tc.function.arguments == ""
                    calls[tc.index] = {"id": tc.id, "name": tc.function.name or "", "args": ""}
                elif tc.function is not None:
                    calls[tc.index]["args"] += tc.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls"
        assert len(calls) == 1  # parallel_tool_calls=false: at most one
        for call in calls.values():
            _check_call(call["name"], call["args"], call["id"])
        assert all(d.type == "function" for d in first_deltas)


def test_named_choice_calls_that_function(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        max_tokens=96,
        seed=1,
    )
    calls = resp.choices[0].message.tool_calls or []
    assert calls and {c.function.name for c in calls} == {"get_time"}
    for call in calls:
        _check_call(call.function.name, call.function.arguments, call.id)


def test_none_answers_in_prose(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=16, seed=1
    )
    choice = resp.choices[0]
    assert choice.message.tool_calls is None
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.content


def test_auto_answers_prose_or_a_valid_call(client: openai.OpenAI) -> None:
    for seed in range(2):
        resp = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            parallel_tool_calls=False,
            max_tokens=120,
            seed=seed,
        )
        choice = resp.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls" and choice.message.content is None
            for call in choice.message.tool_calls:
                _check_call(call.function.name, call.function.arguments, call.id)
        else:
            assert not (choice.message.content or "").lstrip().startswith("{")


def test_tool_results_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=96,
        seed=2,
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    history: list[Any] = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    resp = client.chat.completions.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=24, seed=2
    )
    bare = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=1
    )
    assert resp.choices[0].message.content
    assert resp.usage is not None and bare.usage is not None
    # The call (its JSON) and the result were both read: at least their arguments' tokens more.
    assert resp.usage.prompt_tokens > bare.usage.prompt_tokens + len(call.function.arguments) // 4


@pytest.mark.parametrize(
    ("tools", "choice", "says"),
    [
        ([TOOLS[0], TOOLS[0]], "auto", "two tools are named 'get_weather'"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}],
            "auto",
            "tool 'f'",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
            "auto",
            '"type": "object"',
        ),
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"n": {"minimum": 1}}},
                    },
                }
            ],
            "auto",
            "'minimum'",
        ),
        (TOOLS, {"type": "function", "function": {"name": "missing"}}, "'missing'"),
    ],
)
def test_bad_tools_are_400s_naming_the_problem(
    client: openai.OpenAI, tools: Any, choice: Any, says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=tools, tool_choice=choice, max_tokens=8
        )
    assert says in str(err.value)


def test_a_64_kb_tool_schema_is_refused(client: openai.OpenAI) -> None:
    props = {f"field_{i:05d}": {"type": "string", "description": "x" * 40} for i in range(1200)}
    big = {
        "type": "function",
        "function": {"name": "big", "parameters": {"type": "object", "properties": props}},
    }
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[big], tool_choice="required", max_tokens=8
        )
    assert "65536" in str(err.value)


def test_tools_with_response_format_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            response_format={"type": "json_object"},
            max_tokens=8,
        )
    assert "response_format" in str(err.value)
