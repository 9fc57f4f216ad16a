"""A batch's life on one device: queue limits (429), cancel, resuming a batch the agent was still
queueing when it died, and retention of finished output. Real hub-side nats-server (JetStream
domain ``hq``, set on the hub as ``jetstream_domain``), real leaf, hub (ECHO stand-in), and
``edge-agent run`` driven by the official openai client."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import openai
import pytest

from edge_agent.batches.records import BatchRecord, new_id
from edge_agent.batches.store import BatchStore
from shared.batch_wire import BatchLine
from shared.protocol import ChatTurn, InferParams, InferRequest
from tests.batches.site import (
    CLOUD_MODEL,
    AgentProcess,
    Site,
    agent_process,
    chat_line,
    edge_site,
    jsonl,
    start_agent,
    wait_status,
)
from tests.fixtures.waiting import poll

DEVICE = "dev-life"
RETENTION_S = 4.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with edge_site(tmp_path_factory.mktemp("life"), hub_domain="hq") as s:
        yield s


@pytest.fixture(scope="module")
def agent(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``{"agent": AgentProcess}``: a test may replace the process (SIGKILL and restart)."""
    tmp = tmp_path_factory.mktemp("life-agent")
    limits = {"max_queued_lines": 30, "max_queued_bytes": 20_000, "retention_s": RETENTION_S}
    with agent_process(site, tmp, device=DEVICE, **limits) as first:
        box: dict[str, Any] = {"agent": first, "tmp": tmp}
        yield box
        current: AgentProcess = box["agent"]
        if current is not first and current.proc.poll() is None:
            current.proc.send_signal(signal.SIGTERM)
            current.proc.wait(20)


def _ran(site: Site) -> int:
    assert site.hub.batches is not None, "the hub's batch worker is off"
    return site.hub.batches.ran


def _create(client: openai.OpenAI, lines: list[dict[str, Any]]) -> Any:
    f = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def test_queue_limits_per_device_are_429_naming_the_setting(
    site: Site, agent: dict[str, Any]
) -> None:
    client = agent["agent"].client()
    site.link.down()
    first = _create(client, [chat_line(i) for i in range(20)])
    assert (first.status, first.request_counts.total) == ("in_progress", 20)
    with pytest.raises(openai.RateLimitError, match=r"batches\.max_queued_lines") as lines:
        _create(client, [chat_line(i) for i in range(20)])  # 20 + 20 > 30
    assert lines.value.status_code == 429
    assert lines.value.body["code"] == "batch_queue_full"  # type: ignore[index]
    big = [chat_line(i, "word " * 800) for i in range(5)]  # 25 lines fit, 20 KB of bytes do not
    with pytest.raises(openai.RateLimitError, match=r"batches\.max_queued_bytes"):
        _create(client, big)
    assert [b.id for b in client.batches.list().data if b.status == "failed"] == []
    site.link.up()  # the accepted batch drains; the refused ones never existed
    done = wait_status(client, first.id, {"completed"}, timeout=60)
    assert (done.request_counts.completed, done.request_counts.failed) == (20, 0)


def test_cancel_drops_the_waiting_lines_and_none_of_them_runs(
    site: Site, agent: dict[str, Any]
) -> None:
    client = agent["agent"].client()
    site.link.down()
    doomed = _create(client, [chat_line(i) for i in range(10)])
    cancelling = client.batches.cancel(doomed.id)
    assert cancelling.status in {"cancelling", "cancelled"}
    cancelled = wait_status(client, doomed.id, {"cancelled"}, timeout=30)
    assert cancelled.cancelled_at is not None and cancelled.output_file_id is None
    assert (cancelled.request_counts.completed, cancelled.request_counts.total) == (0, 10)
    assert client.batches.cancel(doomed.id).status == "cancelled"  # a repeat changes nothing
    ran = _ran(site)
    later = _create(client, [chat_line(100 + i) for i in range(3)])
    site.link.up()  # a work queue in order: the cancelled lines would have gone first
    wait_status(client, later.id, {"completed"}, timeout=60)
    assert _ran(site) - ran == 3


async def _leave_half_queued(site: Site, file_id: str, total: int, queued: int) -> str:
    """What an agent killed inside ``POST /v1/batches`` leaves in JetStream: the record still
    ``validating`` and the first ``queued`` lines in the stream."""
    nc = await nats.connect(site.leaf.url)
    try:
        store = BatchStore(nc.jetstream(domain=site.domain), device=DEVICE)
        await store.setup()
        now = int(time.time())
        rec = BatchRecord(
            id=new_id("batch_"),
            endpoint="/v1/chat/completions",
            input_file_id=file_id,
            total=total,
            created_at=now,
            expires_at=now + 86400,
        )
        await store.save_batch(rec)
        for i in range(queued):
            request = InferRequest(
                id=f"r{i}",
                device=DEVICE,
                model=CLOUD_MODEL,
                kind="chat",
                messages=[ChatTurn(role="user", content=f"line {i} says hello")],
                params=InferParams(max_tokens=16),
            )
            line = BatchLine(batch_id=rec.id, index=i, custom_id=f"req-{i}", request=request)
            await store.publish_line(line, local=False)
        return rec.id
    finally:
        await nc.close()


def test_a_batch_the_agent_was_queueing_when_killed_is_finished_after_restart(
    site: Site, agent: dict[str, Any]
) -> None:
    site.link.down()
    running: AgentProcess = agent["agent"]
    f = running.client().files.create(
        file=("in.jsonl", jsonl([chat_line(i) for i in range(6)])), purpose="batch"
    )
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait()
    batch_id = asyncio.run(_leave_half_queued(site, f.id, total=6, queued=2))
    port = int(running.url.rsplit(":", 1)[1])
    agent["agent"] = restarted = start_agent(running.config, port, agent["tmp"] / "again.log")
    client = restarted.client()
    resumed = wait_status(client, batch_id, {"in_progress"}, timeout=30)
    assert resumed.request_counts.total == 6
    ran = _ran(site)
    site.link.up()
    done = wait_status(client, batch_id, {"completed"}, timeout=60)
    assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in out) == [f"req-{i}" for i in range(6)]
    assert _ran(site) - ran == 6  # the 2 lines queued before the kill are not queued twice


def test_finished_output_expires_after_the_retention(site: Site, agent: dict[str, Any]) -> None:
    running: AgentProcess = agent["agent"]
    client = running.client()
    site.link.up()
    batch = _create(client, [chat_line(0)])
    done = wait_status(client, batch.id, {"completed"}, timeout=60)
    output = done.output_file_id
    assert client.files.retrieve(output).expires_at == done.completed_at + int(RETENTION_S)

    def gone() -> bool:
        return httpx.get(f"{running.url}/v1/batches/{batch.id}").status_code == 404

    poll(gone, 30, "the batch to expire", every=0.25)
    r = httpx.get(f"{running.url}/v1/files/{output}/content")
    assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
