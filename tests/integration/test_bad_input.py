"""Every kind of bad request gets a clear OpenAI-shaped 4xx, and the agent keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.fixtures.agents import run_agent
from tests.fixtures.names import MODEL

OK_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _post(agent, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(f"{agent.v1}{path}", timeout=30, **kwargs)


def _error(resp: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert resp.status_code == status, resp.text
    assert resp.headers["x-agl-tier"] == "edge"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "body is empty"),
    ],
)
def test_unparseable_bodies_get_400(agent, content: bytes, needle: str) -> None:  # type: ignore[no-untyped-def]
    err = _error(_post(agent, "/chat/completions", content=content), 400)
    assert needle in err["message"]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": 7}, "model"),
    ],
)
def test_wrong_types_and_values_name_the_field(agent, patch: dict, param: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    err = _error(_post(agent, "/chat/completions", json={**OK_CHAT, **patch}), 400)
    assert err["param"] == param
    assert param.split(".")[0] in err["message"]


def test_unknown_model_is_404_listing_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert MODEL in str(info.value)
    assert info.value.code == "model_not_found"


def test_prompt_longer_than_context_gives_token_counts(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 900}]
        )
    message = str(info.value)
    assert info.value.code == "context_length_exceeded"
    assert "512" in message and "prompt has" in message


def test_prompt_plus_max_tokens_over_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=600
        )
    assert "max_tokens asks for 600" in str(info.value)


def test_body_over_limit_is_413() -> None:
    with run_agent(max_body_bytes=4096) as agent:
        big = {**OK_CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        err = _error(_post(agent, "/chat/completions", json=big), 413)
        assert "4096" in err["message"]

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"model": "' + b"x" * 3000
            yield b"y" * 3000 + b'"}'

        # no Content-Length: the limit is enforced while reading the stream
        err = _error(_post(agent, "/chat/completions", content=chunks()), 413)
        assert "limit is 4096" in err["message"]
        assert _post(agent, "/chat/completions", json=OK_CHAT).status_code == 200


def test_unknown_route_and_wrong_method(agent) -> None:  # type: ignore[no-untyped-def]
    assert "no route" in _error(httpx.get(f"{agent.url}/v2/chat"), 404)["message"]
    assert "not allowed" in _error(httpx.get(f"{agent.v1}/chat/completions"), 405)["message"]


def test_classify_on_a_chat_model_is_400(agent) -> None:  # type: ignore[no-untyped-def]
    err = _error(_post(agent, "/classify", json={"model": MODEL, "input": [1.0, 2.0]}), 400)
    assert err["code"] == "wrong_model_type"


def test_bad_embedding_inputs(agent) -> None:  # type: ignore[no-untyped-def]
    assert (
        _error(_post(agent, "/embeddings", json={"model": MODEL, "input": ""}), 400)["param"]
        == "input"
    )
    err = _error(_post(agent, "/embeddings", json={"model": MODEL, "input": [1, 2, 3]}), 400)
    assert "embeds text" in err["message"]


def test_agent_still_serves_after_bad_requests(agent, client: openai.OpenAI) -> None:  # type: ignore[no-untyped-def]
    # Its own bad requests first (not the earlier tests': their order is not this test's input)
    for content in (b"{not json", b"\xff\xfe{}", b"[1, 2]", b""):
        _error(_post(agent, "/chat/completions", content=content), 400)
    _error(_post(agent, "/classify", json={"model": MODEL, "input": [1.0, 2.0]}), 400)
    _error(_post(agent, "/embeddings", json={"model": MODEL, "input": ""}), 400)
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert out.choices[0].message.content
    assert out.usage is not None and 0 < out.usage.completion_tokens <= 2
