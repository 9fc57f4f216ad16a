"""The generic tool-call format: specs, prompt rendering, grammars and parsing (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.runtimes.grammar import PROSE_OR, gbnf_for
from shared.tool_calls import (
    MAX_PARALLEL_CALLS,
    MalformedCall,
    ParsedCall,
    ToolSpec,
    call_schema,
    grammar_source,
    openai_tool_calls,
    parse_calls,
    render_messages,
)

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
NOW = {"name": "now"}


def spec(choice: str = "auto", parallel: bool = True) -> ToolSpec:
    return ToolSpec.make([WEATHER, NOW], choice=choice, parallel=parallel)


@pytest.mark.parametrize(
    ("functions", "choice", "says"),
    [
        ([WEATHER, WEATHER], "auto", "two tools are named 'get_weather'"),
        ([{"name": "f", "parameters": {"type": "string"}}], "auto", '"type": "object"'),
        ([{"name": "f", "parameters": {"type": "object", "required": 3}}], "auto", "not a valid"),
        (
            [{"name": "f", "parameters": {"type": "object", "not": {}}}],
            "auto",
            "unsupported keyword 'not'",
        ),
        ([WEATHER], "missing", "'missing', which is not in `tools` (get_weather)"),
        ([], "required", "needs at least one tool"),
    ],
)
def test_bad_specs_name_the_problem(functions: Any, choice: str, says: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ToolSpec.make(functions, choice=choice, parallel=None)
    assert says in str(err.value)


def test_callable_functions_follow_the_choice() -> None:
    assert [f["name"] for f in spec("auto").calling] == ["get_weather", "now"]
    assert [f["name"] for f in spec("now").calling] == ["now"]
    assert spec("none").calling == []
    assert spec("required").forced and spec("now").forced and not spec("auto").forced


def test_grammar_sources() -> None:
    assert grammar_source(spec("none")) is None
    forced = grammar_source(spec("required"))
    assert forced is not None and json.loads(forced) == call_schema(spec("required"))
    auto = grammar_source(spec("auto"))
    assert auto == PROSE_OR + forced
    gbnf = gbnf_for(auto)
    assert "root ::= call-root | prose" in gbnf and "call-root ::= " in gbnf


def test_one_call_at_most_without_parallel_calls() -> None:
    calls = call_schema(spec("required", parallel=False))["properties"]["tool_calls"]
    assert (calls["minItems"], calls["maxItems"]) == (1, 1)
    assert (
        call_schema(spec("required"))["properties"]["tool_calls"]["maxItems"] == MAX_PARALLEL_CALLS
    )


def test_render_puts_tools_in_the_system_message_and_writes_calls_out() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    out = render_messages(messages, spec("auto"))
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool"]
    assert out[0]["content"].startswith("Be brief.\n\nYou can call these functions:")
    assert "- get_weather: Weather in a city" in out[0]["content"]
    assert "Otherwise answer in plain text." in out[0]["content"]
    assert (
        out[2]["content"] == '{"tool_calls":[{"name":"get_weather","arguments":{"city":"Rome"}}]}'
    )
    assert out[3]["content"] == "Result of get_weather (call_1): sunny"
    # tool_choice none: no tool block, but the history is still written out
    assert render_messages(messages, spec("none"))[0] == {"role": "system", "content": "Be brief."}


def test_render_adds_a_system_message_when_there_is_none() -> None:
    out = render_messages([{"role": "user", "content": "hi"}], spec("required"))
    assert out[0]["role"] == "system" and "Otherwise" not in out[0]["content"]


def test_parse_valid_calls_and_prose() -> None:
    text = '{ "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "now", "arguments": {}}]}'
    assert parse_calls(text, spec("auto")) == [
        ParsedCall("get_weather", {"city": "Oslo"}),
        ParsedCall("now", {}),
    ]
    assert parse_calls("It is sunny.", spec("auto")) is None
    assert parse_calls('{"tool_calls": []}', spec("none")) is None


@pytest.mark.parametrize(
    ("text", "choice", "says"),
    [
        ("It is sunny.", "required", "not valid JSON"),
        ('{"tool_calls": [{"name": "get_weather", "argu', "auto", "not valid JSON"),
        ('{"answer": 1}', "auto", 'no "tool_calls" list'),
        ('{"tool_calls": [{"name": "rm_rf", "arguments": {}}]}', "auto", "'rm_rf'"),
        ('{"tool_calls": [{"name": "now", "arguments": {}}]}', "get_weather", "'now'"),
        (
            '{"tool_calls": [{"name": "get_weather", "arguments": {}}]}',
            "auto",
            "'city' is a required",
        ),
        ('{"tool_calls": [{"name": "get_weather", "arguments": [1]}]}', "auto", "not an object"),
    ],
)
def test_malformed_calls_are_reported(text: str, choice: str, says: str) -> None:
    with pytest.raises(MalformedCall) as err:
        parse_calls(text, spec(choice))
    assert says in str(err.value)


def test_two_calls_without_parallel_calls_are_malformed() -> None:
    text = '{"tool_calls": [{"name": "now", "arguments": {}}, {"name": "now", "arguments": {}}]}'
    with pytest.raises(MalformedCall, match="parallel_tool_calls is false"):
        parse_calls(text, spec("auto", parallel=False))


def test_openai_shape() -> None:
    (call,) = openai_tool_calls([ParsedCall("get_weather", {"city": "Oslo"})])
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}


def _job(**body: Any) -> Any:
    from edge_agent.api.jobs import chat_job
    from edge_agent.api.schemas import ChatCompletionRequest

    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return chat_job(ChatCompletionRequest.model_validate({**base, **body}))


def test_a_job_constrains_to_the_calls_or_to_the_response_format() -> None:
    tools = [{"type": "function", "function": WEATHER}]
    required = _job(tools=tools, tool_choice="required")
    assert required.params.grammar == grammar_source(required.tools)
    assert required.needs == frozenset({"tools"})
    # tool_choice "none": no call grammar, so a JSON response_format still holds
    none = _job(tools=tools, tool_choice="none", response_format={"type": "json_object"})
    assert none.params.grammar == "json_object"
    assert none.needs == frozenset({"json_schema"})
    assert none.cloud_params().grammar == "json_object"
    assert required.cloud_params().grammar is None  # the hub makes the call grammar from tools
