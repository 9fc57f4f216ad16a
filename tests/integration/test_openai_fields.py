"""Every OpenAI request field is honoured or refused with a 400 naming it (none silently dropped)."""

from __future__ import annotations

import httpx
import pytest
from openai.types import completion_create_params as text_params
from openai.types import embedding_create_params as embed_params
from openai.types.chat import completion_create_params as chat_params

from edge_agent.api.openai_fields import IGNORED_FIELDS, UNSUPPORTED
from tests.fixtures.names import MODEL

BASE = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
TOOL = {
    "type": "function",
    "function": {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
    },
}

# A value for each honoured field that is not its default.
HONOURED: dict[str, object] = {
    "model": MODEL,
    "messages": BASE["messages"],
    "max_tokens": 2,
    "max_completion_tokens": 2,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["\n\n"],
    "seed": 7,
    "n": 1,
    "stream": False,
    "stream_options": None,
    "logprobs": True,
    "top_logprobs": 2,
    "frequency_penalty": 0.5,
    "presence_penalty": 0.5,
    "response_format": {"type": "json_object"},
    "tools": [TOOL],
    "tool_choice": "none",
    "parallel_tool_calls": False,
}
# Fields honoured only together with others: what they need, and what the answer then shows.
COMPANIONS: dict[str, dict[str, object]] = {
    "tools": {"tool_choice": "required", "max_tokens": 256, "temperature": 0},
}
# A value each refused field is refused with.
REFUSED: dict[str, object] = {
    "audio": {"voice": "alloy", "format": "mp3"},
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"},
    "functions": [{"name": "f"}],
    "function_call": "auto",
    "logit_bias": {"50256": -100},
    "web_search_options": {},
    "moderation": {"x": 1},
    "verbosity": "high",
}


def _chat_fields() -> set[str]:
    typed = chat_params.CompletionCreateParamsStreaming
    return set(typed.__required_keys__) | set(typed.__optional_keys__)


def test_every_chat_field_has_a_policy() -> None:
    fields = _chat_fields()
    covered = set(HONOURED) | set(REFUSED) | IGNORED_FIELDS
    assert fields - covered == set(), "decide how these new OpenAI fields are handled"
    assert set(REFUSED) <= set(UNSUPPORTED)


@pytest.mark.parametrize("field", sorted(_chat_fields()))
def test_each_chat_field_is_honoured_or_refused(agent, field: str) -> None:  # type: ignore[no-untyped-def]
    body = dict(BASE)
    refused = REFUSED
    if field in refused:
        body[field] = refused[field]
        resp = httpx.post(f"{agent.v1}/chat/completions", json=body, timeout=120)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == field
        assert field in resp.json()["error"]["message"]
        return
    body[field] = HONOURED.get(field, "anything")  # ignored fields take any value
    body.update(COMPANIONS.get(field, {}))
    resp = httpx.post(f"{agent.v1}/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, (field, resp.text)
    if field == "tools":
        assert resp.json()["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    "field",
    [
        "temperature",
        "top_p",
        "n",
        "stream",
        "logprobs",
        "stop",
        "seed",
        "max_tokens",
        "response_format",
        "tools",
        "tool_choice",
        "stream_options",
        "top_logprobs",
        "frequency_penalty",
        "presence_penalty",
    ],
)
def test_explicit_null_is_accepted(agent, field: str) -> None:  # type: ignore[no-untyped-def]
    body = {**BASE, field: None}
    if field == "max_tokens":
        body["max_completion_tokens"] = 1
    resp = httpx.post(f"{agent.v1}/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text


def test_unknown_field_is_a_400_naming_it(agent) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.post(f"{agent.v1}/chat/completions", json={**BASE, "top_k": 5}, timeout=60)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "top_k"


def test_completion_fields_suffix_and_best_of_are_refused(agent) -> None:  # type: ignore[no-untyped-def]
    typed = text_params.CompletionCreateParamsBase
    assert {"suffix", "best_of"} <= set(typed.__optional_keys__) | set(typed.__required_keys__)
    base = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}
    for field, value in (("suffix", "end"), ("best_of", 3)):
        resp = httpx.post(f"{agent.v1}/completions", json={**base, field: value}, timeout=60)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == field
    ok = {**base, "suffix": None, "best_of": 1, "echo": None, "logprobs": None, "user": "u"}
    assert httpx.post(f"{agent.v1}/completions", json=ok, timeout=60).status_code == 200


def test_embedding_dimensions_truncate_and_renormalise(agent) -> None:  # type: ignore[no-untyped-def]
    keys = set(embed_params.EmbeddingCreateParams.__optional_keys__)
    assert "dimensions" in keys
    body = {"model": MODEL, "input": "hello", "dimensions": 16}
    resp = httpx.post(f"{agent.v1}/embeddings", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    vec = resp.json()["data"][0]["embedding"]
    assert len(vec) == 16
    assert abs(sum(x * x for x in vec) - 1.0) < 1e-4
    too_many = httpx.post(f"{agent.v1}/embeddings", json={**body, "dimensions": 10**6}, timeout=60)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "dimensions"
