"""The hub fails under a real agent: killed mid-answer, absent, unreachable, flapping.

Hubs that get killed run as child processes (``hubctl serve``) serving the
ECHO back-end, a test stand-in that repeats the prompt, slowed with ``echo_delay_s`` so that a
SIGKILL lands mid-answer. The agent is real (bundled model, n_ctx 512) and is driven with the
official ``openai`` client.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import openai
import pytest

from shared.embedded_nats import NatsServer, free_port
from tests.fixtures.agents import edge
from tests.fixtures.calls import chat, long_prompt, metric, oai, route_decisions, stream_chat
from tests.fixtures.hubs import (
    echo_spec,
    hub_in_thread,
    hub_process,
    hub_request_counts,
    hub_settings,
)
from tests.fixtures.names import CLOUD, PLAIN
from tests.fixtures.nats import nats_server as start_nats
from tests.fixtures.waiting import poll

pytestmark = pytest.mark.timeout(60)

SLOW_WORDS = long_prompt(40)
"""40 words for a slowed echo hub to repeat."""


def test_hub_killed_mid_request_falls_back_to_a_local_answer(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Alive, the hub would answer 8 words in 2.4 s, within the agent's 3 s request timeout.
    settings = hub_settings(nats_server.url, echo_spec(delay_s=0.3))
    with (
        hub_process(settings, tmp_path) as hub,
        edge(nats_server.url, hub={"request_timeout_s": 3}) as agent,
        oai(agent) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        before = sum(hub_request_counts(nats_server.url, expect=1).values())
        pending = pool.submit(chat, client, SLOW_WORDS, headers=CLOUD, max_tokens=8)
        poll(
            lambda: sum(hub_request_counts(nats_server.url, expect=1).values()) > before,
            1.5,
            "the hub to take the request",
        )
        hub.kill()
        (where, answer) = pending.result(timeout=20)
        # Nothing had reached the client yet, so the agent answers locally, marked fallback,
        # once hub.request_timeout_s (3 s) runs out: on a request/reply the edge cannot tell
        # a dead hub from a slow one.
        assert where == ("edge", "fallback")
        # (the text itself proves nothing: the small local model may well repeat "w0 w1 …")
        assert answer.choices[0].message.content
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("timeout",): 1}


def test_hub_killed_mid_stream_ends_the_stream_with_an_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = hub_settings(nats_server.url, echo_spec(delay_s=0.2))
    with (
        hub_process(settings, tmp_path) as hub,
        edge(nats_server.url, hub={"chunk_timeout_s": 1.5}) as agent,
        oai(agent) as client,
    ):
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": SLOW_WORDS}],
            max_tokens=64,
            stream=True,
            extra_headers=CLOUD,
        )
        assert (raw.headers["x-agl-tier"], raw.headers["x-agl-reason"]) == ("cloud", "policy")
        received: list[str] = []
        killed = False
        with raw.parse() as stream, pytest.raises(openai.APIError) as failed:
            for chunk in stream:
                received += [c.delta.content or "" for c in chunk.choices]
                if len("".join(received).split()) == 3:
                    hub.kill()
                    killed = True
        assert killed, "the stream failed before the hub was killed"
        # the hub's own words; one more may have been on the wire when it died
        words = "".join(received).split()
        assert words in (SLOW_WORDS.split()[:3], SLOW_WORDS.split()[:4])
        assert "hub failed mid-answer" in failed.value.message
        assert failed.value.code == "cloud_failed"

        # The agent is fine: the next cloud request is answered locally, on "no responders"
        # (the dead hub's subscription is gone), not after a timeout.
        where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=8)
        assert where == ("edge", "fallback")
        assert answer.choices[0].message.content != PLAIN
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("no_responders",): 1}


def test_no_hub_on_nats_falls_back_on_no_responders(nats_server: NatsServer) -> None:
    with edge(nats_server.url) as agent, oai(agent) as client:  # NATS is up, no hub subscribed
        for _ in range(2):
            where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=8)
            assert where == ("edge", "fallback")
            assert answer.choices[0].message.content != PLAIN

            where, text, usage = stream_chat(client, PLAIN, headers=CLOUD, max_tokens=8)
            assert where == ("edge", "fallback")
            assert text and text != PLAIN
            assert 0 < usage.completion_tokens <= 8
        # "no responders", not a timeout, for each request that left
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("no_responders",): 3}
        # three failures opened the circuit (default breaker_failures=3): the 4th never left
        assert agent.state.uplink is not None
        assert agent.state.uplink.breaker.state == "open"
        assert route_decisions(agent)[("edge", "fallback")] == 4


def test_unreachable_nats_falls_back_without_trying() -> None:
    dead = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    with edge(dead, wait=False) as agent, oai(agent) as client:  # NATS down holds nothing up
        assert agent.state.uplink is not None
        assert not agent.state.uplink.connected
        for stream in (False, True):
            if stream:
                where, text, _ = stream_chat(client, PLAIN, headers=CLOUD, max_tokens=8)
            else:
                where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=8)
                text = answer.choices[0].message.content
            assert where == ("edge", "fallback")
            assert text and text != PLAIN
        assert route_decisions(agent) == {("edge", "fallback"): 2}
        # the router saw the link down and did not try: no failed escalation to count
        assert metric(agent, "agl_cloud_failures_total", "kind") == {}


def test_circuit_opens_after_failures_and_closes_when_the_hub_is_back() -> None:
    with (
        start_nats(monitor=True) as server,
        # No heartbeat and no desired-state watch: the server's in_msgs count only requests.
        edge(
            server.url,
            hub={"breaker_failures": 2, "breaker_cooldown_s": 3, "heartbeat_s": 3600},
            desired={"enabled": False},
        ) as agent,
        oai(agent) as client,
    ):
        uplink = agent.state.uplink
        assert uplink is not None

        def agent_msgs() -> int:
            (conn,) = server.connections("edge-agent")
            return int(conn["in_msgs"])

        for _ in range(2):  # no hub: two no-responders failures
            assert chat(client, PLAIN, headers=CLOUD)[0] == ("edge", "fallback")
        assert uplink.breaker.state == "open"
        sent = agent_msgs()
        assert sent >= 2  # the two requests did reach NATS

        where, answer = chat(client, PLAIN, headers=CLOUD)
        assert where == ("edge", "fallback")
        assert answer.choices[0].message.content != PLAIN
        assert uplink.breaker.state == "open", "the 3 s cooldown passed mid-test; too slow a box"
        assert agent_msgs() == sent  # the open circuit kept the request off NATS
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("no_responders",): 2}

        with hub_in_thread(hub_settings(server.url)) as hub:
            poll(lambda: uplink.breaker.state == "half_open", 10, "the cooldown to pass")
            where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=32)
            assert where == ("cloud", "policy")
            assert answer.choices[0].message.content == PLAIN
            assert uplink.breaker.state == "closed"
            assert chat(client, PLAIN, headers=CLOUD, max_tokens=32)[0] == ("cloud", "policy")
            assert len(hub.finished) == 2
        assert agent_msgs() > sent
