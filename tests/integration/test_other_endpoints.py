"""Completions, models, embeddings, health and metrics."""

from __future__ import annotations

import base64
import math
import threading
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.runtimes.compute_thread import compute_thread
from shared.runtimes.gguf import GgufRuntime
from tests.fixtures.names import MODEL


def test_completions_with_legacy_logprobs(client: openai.OpenAI) -> None:
    out = client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2
    )
    choice = out.choices[0]
    assert choice.text
    assert choice.logprobs is not None
    assert len(choice.logprobs.tokens or []) == 6
    assert "".join(choice.logprobs.tokens or []) == choice.text
    assert all(len(t) == 2 for t in choice.logprobs.top_logprobs or [])
    assert out.usage is not None and out.usage.completion_tokens == 6


def test_completions_stream_and_echo(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8, temperature=0)
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="The sky is", max_tokens=8, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == whole.choices[0].text
    echoed = client.completions.create(
        model=MODEL, prompt="The sky is", max_tokens=8, temperature=0, echo=True
    )
    assert echoed.choices[0].text == "The sky is" + whole.choices[0].text


def test_models_lists_the_bundled_model(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_embeddings_are_normalised_and_distinguish_texts(client: openai.OpenAI) -> None:
    out = client.embeddings.create(
        model=MODEL, input=["a cat sat on the mat", "a cat sat on a mat", "quantum field theory"]
    )
    vecs = [d.embedding for d in out.data]
    assert len(vecs) == 3 and len(vecs[0]) > 100
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vecs)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])
    assert out.usage.prompt_tokens > 0


def test_embeddings_run_on_the_process_s_compute_thread(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pool thread running llama.cpp next to the decoder's would slow every stream ~3x
    # (OpenMP); the embedding waits for a gap between decode steps instead.
    seen: list[int] = []
    real = GgufRuntime.embed

    def noting_thread(self: GgufRuntime, *args: Any, **kwargs: Any) -> Any:
        seen.append(threading.get_ident())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GgufRuntime, "embed", noting_thread)
    out = client.embeddings.create(model=MODEL, input=["a cat", "a dog"])
    assert len(out.data) == 2
    assert seen == [compute_thread().call(threading.get_ident).result(timeout=10)]


def test_embeddings_float_and_base64_formats_carry_the_same_vector(agent) -> None:  # type: ignore[no-untyped-def]
    def embed(encoding: str | None) -> list[float]:
        body = {"model": MODEL, "input": "hi"} | ({"encoding_format": encoding} if encoding else {})
        r = httpx.post(f"{agent.v1}/embeddings", json=body, timeout=30)
        assert r.status_code == 200, r.text
        vector = r.json()["data"][0]["embedding"]
        if encoding == "base64":  # little-endian float32, as OpenAI sends it
            return np.frombuffer(base64.b64decode(vector), dtype="<f4").tolist()
        assert all(isinstance(x, float) for x in vector)
        return list(vector)

    floats = embed("float")
    assert len(floats) > 100
    assert embed(None) == floats  # float is the default
    # base64 carries float32: the same vector to float32 precision
    assert np.array_equal(np.asarray(embed("base64"), dtype="<f4"), np.asarray(floats, dtype="<f4"))


def test_an_input_with_no_tokens_is_a_400_naming_it(agent) -> None:  # type: ignore[no-untyped-def]
    # '\x16' tokenizes to nothing; llama.cpp cannot decode an empty batch (found by test_fuzz).
    body = {"model": MODEL, "input": ["hi", "\x16"]}
    r = httpx.post(f"{agent.v1}/embeddings", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert "input 1" in r.json()["error"]["message"]
    assert "no tokens" in r.json()["error"]["message"]


def test_health_ready_and_metrics_parse(agent, client: openai.OpenAI) -> None:  # type: ignore[no-untyped-def]
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert httpx.get(f"{agent.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{agent.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    text = httpx.get(f"{agent.url}/metrics").text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"agl_http_requests", "agl_tokens", "agl_queue_depth", "agl_model_ready"} <= names
    tokens = {
        s.labels["kind"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "agl_tokens"
        for s in f.samples
        if s.name == "agl_tokens_total"
    }
    assert tokens["completion"] >= 2
