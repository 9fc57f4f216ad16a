"""HTTP conformance with the real agent: x-request-id, HTTP/1.0 clients, logprob bytes/offsets."""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.fixtures.agents import RunningAgent
from tests.fixtures.names import MODEL

ASK = [{"role": "user", "content": "Name three cafés in Zürich, with emoji."}]


def test_x_request_id_is_the_response_id(
    agent: RunningAgent, client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.access")
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK, max_tokens=2)  # type: ignore[arg-type]
    chat = raw.parse()
    assert raw.headers["x-request-id"] == chat.id and chat.id.startswith("chatcmpl-")

    streamed = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        max_tokens=2,
        stream=True,
    )
    ids = {c.id for c in streamed.parse()}
    assert ids == {streamed.headers["x-request-id"]}

    text = client.completions.with_raw_response.create(model=MODEL, prompt="Hi", max_tokens=2)
    assert text.headers["x-request-id"] == text.parse().id and text.parse().id.startswith("cmpl-")

    error = httpx.post(f"{agent.v1}/chat/completions", json={"model": MODEL}, timeout=30)
    assert error.status_code == 400 and error.headers["x-request-id"].startswith("req-")

    logged = [vars(r).get("request_id") for r in caplog.records if r.name == "edge_agent.access"]
    assert chat.id in logged and streamed.headers["x-request-id"] in logged
    assert error.headers["x-request-id"] in logged


def _http10(agent: RunningAgent, body: dict[str, object]) -> bytes:
    url = urlsplit(agent.url)
    data = json.dumps(body).encode()
    with socket.create_connection((url.hostname, url.port), timeout=120) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(data) + data
        )
        out = b""
        while chunk := sock.recv(65536):  # HTTP/1.0: the body ends where the connection does
            out += chunk
    return out


def test_http_1_0_clients_get_streams_without_chunked_framing(agent: RunningAgent) -> None:
    reply = _http10(agent, {"model": MODEL, "messages": ASK, "max_tokens": 4, "stream": True})
    head, _, body = reply.partition(b"\r\n\r\n")
    headers = head.lower()
    assert headers.startswith(b"http/1.1 200")
    assert b"transfer-encoding" not in headers
    assert b"connection: close" in headers
    events = [e for e in body.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"  # no chunk-size lines around the SSE events
    assert all(e.startswith("data: ") for e in events)
    json.loads(events[0][6:])


def test_http_1_0_clients_get_json_with_a_content_length(agent: RunningAgent) -> None:
    reply = _http10(agent, {"model": MODEL, "messages": ASK, "max_tokens": 2})
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(body) in head.lower()
    assert json.loads(body)["object"] == "chat.completion"


def test_logprob_tokens_carry_their_own_bytes(client: openai.OpenAI) -> None:
    for seed in range(3):
        resp = client.chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
            max_tokens=40,
            seed=seed,
            temperature=1.0,
            logprobs=True,
            top_logprobs=1,
        )
        choice = resp.choices[0]
        entries = choice.logprobs.content if choice.logprobs else None
        assert entries
        assert all(e.token and e.bytes for e in entries)  # never an empty token
        joined = bytes(b for e in entries for b in e.bytes or [])
        assert joined.decode("utf-8") == choice.message.content


def test_completion_text_offsets_point_into_the_text(client: openai.OpenAI) -> None:
    prompt = "Zürich is"
    for stream in (False, True):
        chunks = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=12, echo=True, logprobs=1, seed=3, stream=stream
        )
        parts = [chunks] if not stream else list(chunks)  # type: ignore[list-item]
        text = "".join(p.choices[0].text for p in parts if p.choices)  # type: ignore[union-attr]
        offsets = [
            o
            for p in parts
            if p.choices and p.choices[0].logprobs
            for o in p.choices[0].logprobs.text_offset or []
        ]  # type: ignore[union-attr]
        tokens = [
            t
            for p in parts
            if p.choices and p.choices[0].logprobs
            for t in p.choices[0].logprobs.tokens or []
        ]  # type: ignore[union-attr]
        assert text.startswith(prompt)
        assert offsets and offsets[0] == len(prompt)
        for at, token in zip(offsets, tokens, strict=True):
            if not token.startswith("bytes:"):
                assert text[at : at + len(token)] == token
