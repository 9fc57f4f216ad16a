"""A chat template that renders ``tools`` lists them itself; the generic block then only says
how to answer, and the grammar still constrains the call (real llama.cpp, bundled model).

The bundled SmolLM2's template has no tool format, so the test gives the same real model a
ChatML template that renders ``tools`` (set in its GGUF metadata before the runtime reads it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.model_files import bundled_model_path
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import SamplingParams, TokenPiece
from shared.tool_calls import ToolSpec, parse_calls, tool_prompt

TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t.function.name }}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FUNCTIONS = [
    {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
        },
    },
    {"name": "get_time"},
]
ASK = [{"role": "user", "content": "Weather in Rome?"}]


def runtime(template: str | None) -> GgufRuntime:
    import llama_cpp

    path = bundled_model_path()
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=1, verbose=False)
    if template is not None:
        llm.metadata["tokenizer.chat_template"] = template
    return GgufRuntime(llm, path=path, n_threads=1, n_gpu_layers=0)


@pytest.fixture(scope="module")
def tool_runtime() -> Iterator[GgufRuntime]:
    rt = runtime(TOOL_TEMPLATE)
    yield rt
    rt.close()


def _text(rt: GgufRuntime, tokens: list[int]) -> str:
    return "".join(rt.token_text(t) for t in tokens)


def test_the_bundled_template_has_no_tool_format() -> None:
    rt = runtime(None)
    try:
        assert not rt.tool_template
        messages, _, listed = tool_prompt(
            ASK, FUNCTIONS, "auto", None, template_tools=rt.tool_template
        )
        assert listed is None
        assert "You can call these functions:" in messages[0]["content"]
    finally:
        rt.close()


def test_a_tool_template_lists_the_callable_functions(tool_runtime: GgufRuntime) -> None:
    assert tool_runtime.tool_template
    messages, grammar, listed = tool_prompt(
        ASK, FUNCTIONS, "get_weather", False, template_tools=True
    )
    assert [f["name"] for f in listed or []] == ["get_weather"]  # a named choice: that one only
    prompt = _text(tool_runtime, tool_runtime.prepare_chat(messages, tools=listed).tokens)
    assert "Tools: get_weather<|im_end|>" in prompt
    assert "You can call these functions:" not in prompt  # the template listed them
    assert '{"tool_calls": [{"name": "<function>"' in prompt  # the answer format is still said

    pieces = tool_runtime.generate(
        tool_runtime.prepare_chat(messages, tools=listed),
        SamplingParams(max_tokens=64, temperature=0.0, grammar=grammar),
    )
    text = "".join(p.text for p in pieces if isinstance(p, TokenPiece))
    spec = ToolSpec.make(FUNCTIONS, choice="get_weather", parallel=False)
    (call,) = parse_calls(text, spec) or []
    assert call.name == "get_weather" and isinstance(call.arguments["city"], str)


def test_tool_choice_none_lists_nothing(tool_runtime: GgufRuntime) -> None:
    messages, grammar, listed = tool_prompt(ASK, FUNCTIONS, "none", None, template_tools=True)
    assert (grammar, listed) == (None, None)
    prompt = _text(tool_runtime, tool_runtime.prepare_chat(messages, tools=listed).tokens)
    assert "Tools:" not in prompt and "tool_calls" not in prompt
