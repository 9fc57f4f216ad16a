"""The issue's scenario and bad input, with a real hub-side nats-server, a real leaf node, a real
hub (ECHO stand-in back-end) and ``edge-agent run`` processes, driven by the official openai client."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.batches.site import (
    Site,
    agent_process,
    chat_line,
    edge_site,
    jsonl,
    start_agent,
    wait_status,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with edge_site(tmp_path_factory.mktemp("site")) as s:
        yield s


def _lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


@pytest.fixture(scope="module")
def auth_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Operator mode: the hub side checks JWTs; the leaf links with dev-a's credentials."""
    with edge_site(tmp_path_factory.mktemp("auth-site"), auth_device="dev-a") as s:
        yield s


@pytest.mark.parametrize("mode", ["open", "auth"])
def test_200_lines_survive_link_down_and_agent_sigkill_each_answered_once(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site: Site = request.getfixturevalue("site" if mode == "open" else "auth_site")
    with agent_process(site, tmp_path, device="dev-a") as agent:
        client = agent.client()
        site.link.down()
        f = client.files.create(
            file=("in.jsonl", jsonl([chat_line(i) for i in range(200)])), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.status == "in_progress"
        assert batch.request_counts.total == 200
        time.sleep(1.5)  # hellos go nowhere, pulls fail: nothing is answered while the link is down
        assert client.batches.retrieve(batch.id).request_counts.completed == 0
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        restarted = start_agent(
            agent.config, int(agent.url.rsplit(":", 1)[1]), tmp_path / "again.log"
        )
        try:
            client = restarted.client()
            again = client.batches.retrieve(batch.id)
            assert (again.status, again.request_counts.total) == ("in_progress", 200)
            ran_before = site.hub.batches.ran if site.hub.batches else 0
            site.link.up()
            done = wait_status(client, batch.id, {"completed"}, timeout=60)
            assert done.request_counts.completed == 200 and done.request_counts.failed == 0
            out = _lines(client.files.content(done.output_file_id).text)
            assert sorted(x["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(200))
            assert len(out) == 200
            for x in out:
                i = int(x["custom_id"].split("-")[1])
                assert (
                    x["response"]["body"]["choices"][0]["message"]["content"]
                    == f"line {i} says hello"
                )
                assert x["agl"] == {"tier": "cloud", "reason": "default"}
            assert site.hub.batches is not None
            assert site.hub.batches.ran - ran_before == 200  # each line run once on the hub
        finally:
            restarted.proc.send_signal(signal.SIGTERM)
            restarted.proc.wait(20)


def test_bad_input(site: Site, tmp_path: Path) -> None:
    with agent_process(site, tmp_path, device="dev-b", max_file_bytes=4096) as agent:
        client = agent.client()
        # malformed lines: reported one by one in the error file, the batch still completes
        data = (
            jsonl([chat_line(0)])
            + b"{not json\n"
            + jsonl([{"custom_id": "x", "method": "POST", "url": "/v1/completions", "body": {}}])
        )
        f = client.files.create(file=("in.jsonl", data), purpose="batch")
        b = client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = wait_status(client, b.id, {"completed"}, timeout=30)
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
        errors = _lines(client.files.content(done.error_file_id).text)
        assert [e["error"]["code"] for e in errors] == ["invalid_json", "mismatched_url"]
        # an unknown endpoint
        with pytest.raises(openai.BadRequestError, match="not supported in batches"):
            client.batches.create(
                input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
            )  # type: ignore[arg-type]
        # a file over the limit
        with pytest.raises(openai.APIStatusError, match=r"batches\.max_file_bytes") as big:
            client.files.create(file=("big.jsonl", b"x" * 5000), purpose="batch")
        assert big.value.status_code == 413
        # a retried POST /v1/batches with the same Idempotency-Key: one batch, no duplicate work
        key = {"Idempotency-Key": "retry-1"}
        one = client.batches.create(
            input_file_id=f.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            extra_headers=key,
        )
        two = client.batches.create(
            input_file_id=f.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            extra_headers=key,
        )
        assert one.id == two.id
        with agent_process(site, tmp_path, device="dev-c") as other:
            # another device's batch and files are not found there
            r = httpx.get(f"{other.url}/v1/batches/{b.id}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "batch_not_found"
            assert (
                httpx.get(f"{other.url}/v1/files/{done.output_file_id}/content").status_code == 404
            )
