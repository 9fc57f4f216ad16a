"""``metadata.tier`` ``edge`` and ``auto``: batch lines use the device's idle capacity only.

A real hub-side nats-server, leaf, hub (ECHO stand-in) and ``edge-agent run`` with the bundled
local model; an interactive stream keeps the model busy while batches are submitted. The
interactive-latency figure (p50 with a batch running ÷ without) is in ``bench/batch_idle.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.batches.site import AgentProcess, Site, agent_process, edge_site, jsonl, wait_status
from tests.fixtures.names import MODEL
from tests.fixtures.waiting import poll


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with edge_site(tmp_path_factory.mktemp("tiers")) as s:
        yield s


@pytest.fixture(scope="module")
def agent(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with agent_process(site, tmp_path_factory.mktemp("tiers-agent"), device="dev-tiers") as a:
        poll(lambda: httpx.get(f"{a.url}/readyz").status_code == 200, 90, "the local model")
        yield a


def _local_line(i: int) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say hello to number {i}."}],
        "max_tokens": 4,
        "temperature": 0,
    }
    return {"custom_id": f"l-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def _submit(client: openai.OpenAI, tier: str, n: int) -> Any:
    f = client.files.create(
        file=("in.jsonl", jsonl([_local_line(i) for i in range(n)])), purpose="batch"
    )
    return client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"tier": tier},
    )


def _output(client: openai.OpenAI, batch_id: str) -> list[dict[str, Any]]:
    done = wait_status(client, batch_id, {"completed"}, timeout=120)
    assert (done.request_counts.completed, done.request_counts.failed) == (
        done.request_counts.total,
        0,
    )
    text = client.files.content(done.output_file_id).text
    return sorted((json.loads(x) for x in text.splitlines()), key=lambda x: x["custom_id"])


def test_edge_lines_wait_for_idle_and_auto_lines_go_to_the_hub_while_busy(
    agent: AgentProcess,
) -> None:
    client = agent.client()
    # An interactive stream on the local model: a counting prompt runs to max_tokens.
    stream = client.completions.create(
        model=MODEL,
        prompt="1, 2, 3, 4, 5, 6, 7, 8,",
        max_tokens=120,
        temperature=0,
        stream=True,
        extra_headers={"x-agl-tier": "edge"},
    )
    chunks = iter(stream)
    next(chunks)  # the model is generating now
    auto = _submit(client, "auto", 3)  # busy and the hub reachable: these go to the hub
    edge = _submit(client, "edge", 3)  # these wait until the stream is over
    received = [time.time() for c in chunks if c.choices and c.choices[0].text]
    assert len(received) > 20, "the interactive stream ended too early to keep the model busy"
    halfway = received[len(received) // 2]

    moved = _output(client, auto.id)
    assert [x["agl"]["tier"] for x in moved] == ["cloud"] * 3
    assert [x["agl"]["reason"] for x in moved] == ["load"] * 3
    for x in moved:  # the ECHO stand-in answered: the prompt's first max_tokens words
        assert x["response"]["body"]["choices"][0]["message"]["content"] == "Say hello to number"

    ran = _output(client, edge.id)
    assert [(x["agl"]["tier"], x["agl"]["reason"]) for x in ran] == [("edge", "policy")] * 3
    starts = [x["agl"]["started_at"] for x in ran]
    assert min(starts) > halfway, "an edge line started while the interactive stream ran"
    assert all(x["response"]["body"]["object"] == "chat.completion" for x in ran)

    idle = _output(client, _submit(client, "auto", 1).id)  # nothing else runs: local
    assert [(x["agl"]["tier"], x["agl"]["reason"]) for x in idle] == [("edge", "policy")]


def test_an_edge_batch_with_the_link_down_still_runs_locally(
    site: Site, agent: AgentProcess, tmp_path: Path
) -> None:
    client = agent.client()
    site.link.down()
    try:
        out = _output(client, _submit(client, "edge", 2).id)
    finally:
        site.link.up()
    assert [(x["agl"]["tier"], x["agl"]["reason"]) for x in out] == [("edge", "policy")] * 2
