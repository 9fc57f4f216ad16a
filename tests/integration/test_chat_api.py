"""Chat completions through the official OpenAI client against the real bundled model."""

from __future__ import annotations

import openai

from tests.fixtures.names import MODEL

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


def test_greedy_chat_is_deterministic_and_reports_usage(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=24, temperature=0
    )
    second = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=24, temperature=0
    )
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.role == "assistant"
    assert first.usage is not None and first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.object == "chat.completion"


def test_stream_matches_non_stream_and_ends_with_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=32, temperature=0
    )
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=32,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_is_sse_with_done_and_edge_headers(agent) -> None:  # type: ignore[no-untyped-def]
    import httpx

    body = {"model": MODEL, "messages": HELLO, "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{agent.v1}/chat/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-agl-tier"] == "edge"
        assert resp.headers["x-agl-reason"] == "default"
        lines = [line for line in resp.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_max_tokens_stops_with_length(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, temperature=0)
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 3


def test_stop_sequence_cuts_output(client: openai.OpenAI) -> None:
    free = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0)
    text = free.choices[0].message.content or ""
    cut_at = text.strip().split()[1]
    out = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=24, temperature=0, stop=[cut_at]
    )
    assert out.choices[0].finish_reason == "stop"
    assert cut_at not in (out.choices[0].message.content or "")
    assert text.startswith(out.choices[0].message.content or "")


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    runs = {
        client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=16, temperature=1.0, seed=1234
        )
        .choices[0]
        .message.content
        for _ in range(2)
    }
    assert len(runs) == 1


def test_logprobs_and_top_logprobs(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 5
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-4
    assert "".join(e.token for e in content) == out.choices[0].message.content


def test_response_headers_say_edge_default(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=HELLO, max_tokens=2
    )
    assert raw.headers["x-agl-tier"] == "edge"
    assert raw.headers["x-agl-reason"] == "default"
