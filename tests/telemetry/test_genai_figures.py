"""The GenAI figures are true: TTFT, TPOT and duration agree with each other for local answers."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.agents import run_agent
from tests.fixtures.names import MODEL


def _sum(scrape: str, name: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(scrape)
        for s in f.samples
        if s.name == name and s.labels.get("agl_tier", "edge") == "edge"
    )


@pytest.mark.parametrize("stream", [False, True])
def test_local_ttft_is_the_first_token_not_the_whole_answer(stream: bool) -> None:
    with run_agent() as agent:
        body = {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": "Write a long story about a cat who learns to sail."}
            ],
            "max_tokens": 64,
            "temperature": 0,
            "stream": stream,
        }
        resp = httpx.post(f"{agent.v1}/chat/completions", json=body, timeout=60)
        assert resp.status_code == 200
        scrape = httpx.get(f"{agent.url}/metrics").text
    duration = _sum(scrape, "gen_ai_server_request_duration_seconds_sum")
    ttft = _sum(scrape, "gen_ai_server_time_to_first_token_seconds_sum")
    tpot = _sum(scrape, "gen_ai_server_time_per_output_token_seconds_sum")
    completion = sum(
        s.value
        for f in text_string_to_metric_families(scrape)
        for s in f.samples
        if s.name == "agl_tokens_total" and s.labels["kind"] == "completion"
    )
    assert completion > 8 and duration > 0
    # The first token comes well before the last (before the fix TTFT equalled the duration).
    assert 0 < ttft < 0.75 * duration
    # The parts add up: first token, then one TPOT per later token, is the whole generation.
    assert ttft + tpot * (completion - 1) == pytest.approx(duration, rel=0.2)


def test_embeddings_get_genai_figures_too() -> None:
    with run_agent() as agent:
        resp = httpx.post(
            f"{agent.v1}/embeddings", json={"model": MODEL, "input": ["a b c", "d e"]}, timeout=60
        )
        assert resp.status_code == 200
        used = resp.json()["usage"]["prompt_tokens"]
        scrape = httpx.get(f"{agent.url}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(scrape)
        for s in f.samples
    }
    durations = [
        v
        for (name, labels), v in samples.items()
        if name == "gen_ai_server_request_duration_seconds_count"
        and ("gen_ai_operation_name", "embeddings") in labels
    ]
    assert durations == [1]
    assert (
        samples[("agl_tokens_total", (("kind", "prompt"), ("model", MODEL), ("tier", "edge")))]
        == used
    )
