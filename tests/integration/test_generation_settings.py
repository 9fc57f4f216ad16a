"""Settings and fields the README names, over HTTP: ``stream_interval_ms`` (0 included),
``max_completion_tokens``, ``top_p``, a pinned ``extra_models`` digest that does not match, and
``--model-path``/``--model-id``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
from click.testing import CliRunner

from edge_agent.cli import main as edge_agent
from edge_agent.settings import load_settings
from shared.model_files import bundled_model_path, sha256_file
from tests.fixtures.agents import run_agent
from tests.fixtures.names import MODEL
from tests.fixtures.waiting import poll

STORY = [{"role": "user", "content": "Tell me a long story about a dragon."}]


def _content_chunks(url: str, max_tokens: int) -> tuple[int, int, str]:
    """Stream a greedy answer: (chunks that carry text, completion tokens, the text)."""
    body = {
        "model": MODEL,
        "messages": STORY,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks, usage, text = 0, 0, ""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            for choice in event["choices"]:
                if choice["delta"].get("content"):
                    chunks += 1
                    text += choice["delta"]["content"]
    return chunks, usage, text


def test_stream_interval_ms_sets_how_tokens_are_grouped() -> None:
    with run_agent(stream_interval_ms=0) as agent:
        chunks, tokens, text = _content_chunks(agent.url, 16)
    assert tokens == 16 and text
    assert chunks == tokens  # 0: every token is its own chunk, sent at once
    with run_agent(stream_interval_ms=1000) as agent:  # the most: one flush a second
        grouped, tokens, same = _content_chunks(agent.url, 16)
    assert tokens == 16 and same == text  # greedy: the same text, only grouped
    assert 1 <= grouped < tokens


def test_max_completion_tokens_caps_the_answer(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL, messages=STORY, max_completion_tokens=5, temperature=0
    )
    assert out.usage is not None and out.usage.completion_tokens == 5
    assert out.choices[0].finish_reason == "length"


def test_a_tiny_top_p_leaves_only_the_likeliest_token(client: openai.OpenAI) -> None:
    greedy = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=8, temperature=0
    )
    nucleus = [
        client.chat.completions.create(
            model=MODEL, messages=STORY, max_tokens=8, temperature=1.5, top_p=1e-6, seed=seed
        )
        for seed in (1, 2)
    ]
    # with top_p that small only the most likely token is left, whatever the seed
    texts = {c.choices[0].message.content for c in nucleus}
    assert texts == {greedy.choices[0].message.content}
    wide = {
        client.chat.completions.create(
            model=MODEL, messages=STORY, max_tokens=8, temperature=1.5, top_p=1.0, seed=seed
        )
        .choices[0]
        .message.content
        for seed in (1, 2, 3)
    }
    assert len(wide) > 1  # without it, seeds differ (so the check above is not vacuous)


def test_an_extra_model_whose_digest_differs_is_refused_naming_both(tmp_path: Path) -> None:
    path = bundled_model_path()
    pinned = "0" * 64
    extra = [{"id": "copy", "path": str(path), "task": "chat", "sha256": pinned}]
    with run_agent(wait_ready=False, extra_models=extra, keep_running_on_load_error=True) as agent:
        ready = poll(
            lambda: (
                (r := httpx.get(f"{agent.url}/readyz", timeout=10)).json()["status"] != "loading"
                and r
            ),
            60,
            "the models to load",
        )
        models = {m["id"]: m["ready"] for m in httpx.get(f"{agent.v1}/models").json()["data"]}
    assert ready.status_code == 503 and ready.json()["status"] == "failed"
    error = ready.json()["error"]
    assert sha256_file(path) in error and pinned in error
    assert "re-download the file or update the pinned digest" in error
    assert models == {MODEL: True, "copy": False}  # the good model still serves


def test_model_path_and_model_id_name_the_model_the_agent_serves(tmp_path: Path) -> None:
    gguf = tmp_path / "my.gguf"
    gguf.symlink_to(bundled_model_path())
    shown = CliRunner().invoke(
        edge_agent,
        ["config", "show", "--model-path", str(gguf), "--model-id", "my-model"],
        env={k: "" for k in ("AGL_MODEL_PATH", "AGL_MODEL_ID")},
    )
    assert shown.exit_code == 0, shown.output
    assert f'model_path = "{gguf}"' in shown.output
    assert 'model_id = "my-model"' in shown.output
    settings = load_settings(None, model_path=gguf, model_id="my-model", n_ctx=512, n_threads=1)
    with run_agent(settings) as agent:
        listed = [m["id"] for m in httpx.get(f"{agent.v1}/models", timeout=10).json()["data"]]
        answer = httpx.post(
            f"{agent.v1}/chat/completions",
            json={"model": "my-model", "messages": STORY, "max_tokens": 2},
            timeout=60,
        )
        other = httpx.post(
            f"{agent.v1}/chat/completions",
            json={"model": MODEL, "messages": STORY, "max_tokens": 2},
            timeout=60,
        )
    assert listed == ["my-model"]
    assert answer.status_code == 200 and answer.json()["model"] == "my-model"
    assert other.status_code == 404, other.text
