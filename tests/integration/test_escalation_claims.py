"""README claims about escalation, end to end: the daily token budget, a hub that dies before
its first token, a client that hangs up, and a hub's drain cut-off.

The hub serves the ECHO back-end, a test stand-in that repeats the prompt (``echo_delay_s``
per word, the first word included).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import httpx
import pytest

from cloud_hub.serving import running_hub
from edge_agent.uplink import Uplink
from shared.protocol import EndMessage
from tests.fixtures.agents import RunningAgent, edge
from tests.fixtures.calls import chat, long_prompt, metric, oai, route, route_decisions
from tests.fixtures.hubs import (
    echo_spec,
    hub_in_thread,
    hub_process,
    hub_request_counts,
    hub_settings,
    infer_request,
    wait_serving,
)
from tests.fixtures.names import CLOUD, ECHO, LOCAL_MODEL, PLAIN
from tests.fixtures.nats import NatsServer
from tests.fixtures.waiting import poll

pytestmark = pytest.mark.timeout(90)


def budget(agent: RunningAgent) -> dict[str, int]:
    """The hub link's token budget as ``GET /status`` shows it."""
    return httpx.get(f"{agent.url}/status", timeout=10).json()["hub"]["budget"]


def test_the_daily_token_budget_stops_escalation_through_the_agent(
    nats_server: NatsServer,
) -> None:
    # PLAIN is 9 words: the echo hub counts 9 prompt + 9 completion tokens per answer
    with (
        hub_in_thread(hub_settings(nats_server.url)) as hub,
        edge(nats_server.url, hub={"daily_token_budget": 30}) as agent,
        oai(agent) as client,
    ):
        where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=32)
        assert where == ("cloud", "policy") and answer.choices[0].message.content == PLAIN
        assert budget(agent) == {"daily_tokens": 30, "spent_today": 18, "remaining_today": 12}
        where, _ = chat(client, PLAIN, headers=CLOUD, max_tokens=32)  # 18 spent < 30: allowed
        assert where == ("cloud", "policy")
        # 36 spent: the budget is gone, so the cloud is not asked and the edge answers
        where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=8)
        assert where == ("edge", "fallback")
        assert answer.choices[0].message.content != PLAIN
        assert budget(agent) == {"daily_tokens": 30, "spent_today": 36, "remaining_today": 0}
        assert route_decisions(agent) == {("cloud", "policy"): 2, ("edge", "fallback"): 1}
    assert len(hub.finished) == 2


def test_a_stream_falls_back_to_local_when_the_hub_dies_before_its_first_token(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # the hub waits 5 s before each word: it is killed while it has sent nothing
    settings = hub_settings(nats_server.url, echo_spec(delay_s=5))
    with (
        hub_process(settings, tmp_path) as hub,
        edge(nats_server.url, hub={"first_chunk_timeout_s": 2}) as agent,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        before = sum(hub_request_counts(nats_server.url, expect=1).values())
        body = {
            "model": LOCAL_MODEL,
            "messages": [{"role": "user", "content": PLAIN}],
            "max_tokens": 8,
            "stream": True,
        }

        def stream() -> tuple[tuple[str, str], list[str]]:
            with httpx.stream(
                "POST", f"{agent.v1}/chat/completions", json={**body}, headers=CLOUD, timeout=60
            ) as resp:
                return route(resp.headers), [line for line in resp.iter_lines() if line]

        pending = pool.submit(stream)
        poll(
            lambda: sum(hub_request_counts(nats_server.url, expect=1).values()) > before,
            10,
            "the hub to take the request",
        )
        hub.kill()
        where, lines = pending.result(timeout=60)
        assert where == ("edge", "fallback")
        assert lines[-1] == "data: [DONE]"
        assert not any('"error"' in line for line in lines)
        text = "".join(
            httpx.Response(200, content=line[6:]).json()["choices"][0]["delta"].get("content") or ""
            for line in lines[:-1]
            if line.startswith("data: {") and '"choices":[{' in line
        )
        assert text and text != PLAIN  # the local model's answer, not the hub's
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("timeout",): 1}


def test_a_client_that_hangs_up_stops_the_generation_on_the_hub(nats_server: NatsServer) -> None:
    words = long_prompt(400)  # 400 words at 20 ms each: 8 s if nobody stops it
    settings = hub_settings(nats_server.url, echo_spec(delay_s=0.02))
    with hub_in_thread(settings) as hub, edge(nats_server.url) as agent:
        body = {
            "model": LOCAL_MODEL,
            "messages": [{"role": "user", "content": words}],
            "max_tokens": 400,
            "stream": True,
        }
        with httpx.stream(
            "POST", f"{agent.v1}/chat/completions", json=body, headers=CLOUD, timeout=30
        ) as resp:
            assert route(resp.headers) == ("cloud", "policy")
            got = 0
            for line in resp.iter_lines():
                got += line.startswith("data: {")
                if got == 3:
                    break  # leaving the block closes the connection mid-answer
        (finished,) = poll(lambda: list(hub.finished), 10, "the hub to stop the request")
        assert finished.finish_reason == "cancelled"
        assert finished.completion_tokens < 400


async def test_drain_timeout_cuts_off_what_is_still_running(
    nats_server: NatsServer, uplink: Uplink
) -> None:
    words = long_prompt(400)  # 400 words at 20 ms each: 8 s, far past the 0.5 s drain
    settings = hub_settings(
        nats_server.url, echo_spec(delay_s=0.02), drain_timeout_s=0.5, interest_check_s=0
    )
    received: list[str] = []
    async with running_hub(settings) as hub:
        await wait_serving(nats_server.url, [ECHO])
        req = infer_request(words, stream=True, max_tokens=400)
        stream = uplink.stream(req, timeout=5, first_chunk_timeout=5)
        received.append(await anext(stream))  # it is answering
        drained = asyncio.create_task(hub.drain())
        pieces = [piece async for piece in stream]
        await asyncio.wait_for(drained, 30)
    # cut off at the drain deadline: the answer ends, marked cancelled, well short of 400 words
    end = pieces[-1]
    assert isinstance(end, EndMessage) and end.finish_reason == "cancelled"
    received += [p for p in pieces if isinstance(p, str)]
    assert 1 <= len("".join(received).split()) == end.usage.completion_tokens < 400
    (finished,) = hub.finished
    assert (finished.id, finished.finish_reason) == (req.id, "cancelled")
