"""Every router reason end to end: real nats-server, real hub, real agent, official client.

The hub serves the ECHO back-end (a test stand-in that repeats the prompt), so a cloud answer
is recognisable by its text; one test uses the real GGUF back-end. Each test checks the
``x-agl-tier``/``x-agl-reason`` headers and the answer's origin, and most also check that
``/metrics`` counted the decision.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from cloud_hub.serving import HubService
from cloud_hub.settings import HubModelSpec
from shared.embedded_nats import NatsServer
from tests.fixtures.agents import edge
from tests.fixtures.calls import chat, long_prompt, metric, oai, route, route_decisions, stream_chat
from tests.fixtures.held_slot import held_after_first_token
from tests.fixtures.hubs import echo_spec, hub_in_thread, hub_request_counts, hub_settings
from tests.fixtures.names import CLOUD, CLOUD_MODEL, LOCAL_MODEL, PLAIN
from tests.fixtures.waiting import poll

pytestmark = pytest.mark.timeout(60)

ALIAS = "glm-big"
"""A cloud alias of the echo hub's model."""
GHOST = "ghost-big"
"""A cloud alias of a model no hub serves."""
LOCAL_TEXT = "Say hello."
HELD_TOKENS = 400
"""The busy request's max_tokens: the one generation ``held_after_first_token`` holds."""
"""A prompt for local answers (the echo of it would be exactly this text)."""


@pytest.fixture()
def threaded_echo_hub(nats_server: NatsServer) -> Iterator[HubService]:
    """A hub on a background loop (these tests are sync) serving the ECHO stand-in as ``ECHO``."""
    with hub_in_thread(hub_settings(nats_server.url)) as hub:
        yield hub


def test_tier_header_forces_the_tier(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    with edge(nats_server.url) as agent, oai(agent) as client:
        where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=32)
        assert where == ("cloud", "policy")
        assert answer.choices[0].message.content == PLAIN  # the hub's (echo) answer
        assert answer.usage.completion_tokens == answer.usage.prompt_tokens == 9
        assert answer.choices[0].finish_reason == "stop"

        where, answer = chat(client, PLAIN, headers={"x-agl-tier": "edge"})
        assert where == ("edge", "policy")
        assert answer.choices[0].message.content != PLAIN
        assert 0 < answer.usage.completion_tokens <= 8

        assert route_decisions(agent) == {("cloud", "policy"): 1, ("edge", "policy"): 1}
    assert [f.model for f in threaded_echo_hub.finished] == [CLOUD_MODEL]


def test_cloud_alias_goes_to_the_cloud(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    with (
        edge(nats_server.url, router={"cloud_aliases": {ALIAS: CLOUD_MODEL}}) as agent,
        oai(agent) as client,
    ):
        where, answer = chat(client, PLAIN, model=ALIAS, max_tokens=32)
        assert where == ("cloud", "policy")
        assert answer.choices[0].message.content == PLAIN
        assert answer.model == CLOUD_MODEL  # the model that answered, not the alias

        where, _ = chat(client, LOCAL_TEXT)  # the local model name is not an alias
        assert where == ("edge", "default")
    assert len(threaded_echo_hub.finished) == 1


def test_prompt_token_rule_sends_long_prompts_to_the_cloud(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    rules = [{"name": "long-prompts", "min_prompt_tokens": 100, "tier": "cloud"}]
    prompt = long_prompt(40)  # ~140 tokens with the chat template: fits n_ctx 512 too
    with edge(nats_server.url, router={"rules": rules}) as agent, oai(agent) as client:
        where, answer = chat(client, prompt, max_tokens=64)
        assert where == ("cloud", "policy")
        assert answer.choices[0].message.content == prompt
        assert answer.usage.prompt_tokens == 40  # the echo hub counts words

        where, _ = chat(client, LOCAL_TEXT)  # ~35 tokens: below the rule
        assert where == ("edge", "default")
        assert route_decisions(agent) == {("cloud", "policy"): 1, ("edge", "default"): 1}


def test_cloud_answers_stream_and_complete_with_usage(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    with edge(nats_server.url) as agent, oai(agent) as client:
        where, text, usage = stream_chat(client, PLAIN, headers=CLOUD, max_tokens=32)
        assert where == ("cloud", "policy")
        assert text == PLAIN
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 9, 18)

        # max_tokens cuts the hub's answer: finish_reason length
        where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=4)
        assert where == ("cloud", "policy")
        assert answer.choices[0].message.content == "the quick brown fox"
        assert answer.choices[0].finish_reason == "length"

        raw = client.completions.with_raw_response.create(
            model=LOCAL_MODEL, prompt=PLAIN, max_tokens=32, extra_headers=CLOUD
        )
        assert route(raw.headers) == ("cloud", "policy")
        completion = raw.parse()
        assert completion.choices[0].text == PLAIN
        assert completion.usage.completion_tokens == 9

        # raw SSE: the headers come with the stream, and it ends with [DONE]
        with httpx.stream(
            "POST",
            f"{agent.v1}/chat/completions",
            headers=CLOUD,
            json={
                "model": LOCAL_MODEL,
                "messages": [{"role": "user", "content": PLAIN}],
                "max_tokens": 32,
                "stream": True,
            },
            timeout=20,
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert route(resp.headers) == ("cloud", "policy")
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert not any('"error"' in e for e in events)
    assert len(threaded_echo_hub.finished) == 4


def test_unsure_local_answer_escalates_with_confidence(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    cascade = {"enabled": True, "min_mean_logprob": -0.0001, "first_k": 4}
    with edge(nats_server.url, router={"cascade": cascade}) as agent, oai(agent) as client:
        where, answer = chat(client, PLAIN, max_tokens=32, temperature=0)
        assert where == ("cloud", "confidence")
        assert answer.choices[0].message.content == PLAIN
        assert answer.usage.completion_tokens == 9

        where, text, usage = stream_chat(client, PLAIN, max_tokens=32, temperature=0)
        assert where == ("cloud", "confidence")
        assert text == PLAIN  # none of the held-back local tokens leaked into the stream
        assert usage.completion_tokens == 9
    assert len(threaded_echo_hub.finished) == 2


def test_confidence_escalations_are_counted_in_metrics(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    cascade = {"enabled": True, "min_mean_logprob": -0.0001, "first_k": 4}
    with edge(nats_server.url, router={"cascade": cascade}) as agent, oai(agent) as client:
        assert chat(client, PLAIN, max_tokens=16, temperature=0)[0] == ("cloud", "confidence")
        assert route_decisions(agent).get(("cloud", "confidence")) == 1


def test_confident_local_answer_stays_at_the_edge(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    # temperature 0 picks the argmax token, whose logprob is above -log(vocab) > -50
    cascade = {"enabled": True, "min_mean_logprob": -50, "min_token_logprob": -50, "first_k": 4}
    with edge(nats_server.url, router={"cascade": cascade}) as agent, oai(agent) as client:
        where, answer = chat(client, LOCAL_TEXT, max_tokens=12, temperature=0)
        assert where == ("edge", "default")
        assert answer.choices[0].message.content
        assert answer.choices[0].message.content != LOCAL_TEXT
        # the cascade asks for logprobs itself; a client that did not ask gets none
        assert answer.choices[0].logprobs is None

        where, text, usage = stream_chat(client, LOCAL_TEXT, max_tokens=12, temperature=0)
        assert where == ("edge", "default")
        assert text == answer.choices[0].message.content  # same greedy answer, held tokens kept
        assert usage.completion_tokens == answer.usage.completion_tokens
        assert route_decisions(agent) == {("edge", "default"): 2}
    assert len(threaded_echo_hub.finished) == 0


def test_busy_local_queue_sends_the_next_request_to_the_cloud_with_load(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    # One slot: a second request would wait (with more slots it starts at once, no load). The
    # long local generation holds that slot after its first token until the test lets it go, so
    # the slot is busy while the test looks, however fast the machine.
    release = threading.Event()
    with (
        edge(
            nats_server.url,
            router={"load_slo_s": 0.001},
            parallel=1,
            scheduler_factory=held_after_first_token(release, HELD_TOKENS),
        ) as agent,
        oai(agent) as client,
    ):
        try:
            with httpx.stream(
                "POST",
                f"{agent.v1}/completions",
                json={
                    "model": LOCAL_MODEL,
                    "prompt": "1, 2, 3, 4, 5,",
                    "max_tokens": HELD_TOKENS,
                    "temperature": 0,
                    "stream": True,
                },
                timeout=30,
            ) as busy:
                assert route(busy.headers) == ("edge", "default")
                lines = busy.iter_lines()
                assert next(line for line in lines if line.startswith("data: {"))  # generating
                assert agent.state.scheduler_for(LOCAL_MODEL).queue_depth == 1

                where, answer = chat(client, PLAIN, max_tokens=32)
                assert where == ("cloud", "load")
                assert answer.choices[0].message.content == PLAIN
                # it did not wait behind the long one, which still holds the slot
                assert agent.state.scheduler_for(LOCAL_MODEL).queue_depth == 1

                where, text, _ = stream_chat(client, PLAIN, max_tokens=32)
                assert (where, text) == (("cloud", "load"), PLAIN)
                assert agent.state.scheduler_for(LOCAL_MODEL).queue_depth == 1  # still busy
        finally:
            release.set()  # leaving the stream cancels the long generation
        assert route_decisions(agent) == {("edge", "default"): 1, ("cloud", "load"): 2}
        # once the queue is empty, requests stay local again
        poll(
            lambda: agent.state.scheduler_for(LOCAL_MODEL).queue_depth == 0,
            10,
            "the cancelled generation to leave the queue",
        )
        assert chat(client, LOCAL_TEXT)[0] == ("edge", "default")


def test_prompt_too_long_for_the_edge_goes_to_the_cloud_with_local_error(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    prompt = long_prompt(200)  # ~720 tokens: over the local n_ctx of 512
    with edge(nats_server.url) as agent, oai(agent) as client:
        where, answer = chat(client, prompt, max_tokens=16)
        assert where == ("cloud", "local_error")
        assert answer.choices[0].message.content == " ".join(prompt.split()[:16])
        assert answer.usage.prompt_tokens == 200

        where, text, _ = stream_chat(client, prompt, max_tokens=16)
        assert where == ("cloud", "local_error")
        assert text.split() == prompt.split()[:16]
        assert route_decisions(agent) == {("cloud", "local_error"): 2}


def test_prompt_too_long_without_a_hub_is_a_clear_400(nats_server: NatsServer) -> None:
    with edge(nats_server.url) as agent:  # NATS is up, but no hub serves anything
        resp = httpx.post(
            f"{agent.v1}/chat/completions",
            json={
                "model": LOCAL_MODEL,
                "messages": [{"role": "user", "content": long_prompt(200)}],
                "max_tokens": 16,
            },
            timeout=20,
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "context_length_exceeded"


def test_local_only_rule_beats_the_cloud_tier_header(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    rules = [{"name": "on-device-model", "models": [LOCAL_MODEL], "tier": "local_only"}]
    with (
        edge(
            nats_server.url, router={"rules": rules, "cloud_aliases": {ALIAS: CLOUD_MODEL}}
        ) as agent,
        oai(agent) as client,
    ):
        where, answer = chat(client, PLAIN, headers=CLOUD, max_tokens=8)
        assert where == ("edge", "local_only")
        assert answer.choices[0].message.content != PLAIN

        where, text, _ = stream_chat(client, PLAIN, headers=CLOUD, max_tokens=8)
        assert where == ("edge", "local_only")
        assert text != PLAIN

        # too long for the edge: local_only still never escalates (local_error would)
        resp = httpx.post(
            f"{agent.v1}/chat/completions",
            headers=CLOUD,
            json={
                "model": LOCAL_MODEL,
                "messages": [{"role": "user", "content": long_prompt(200)}],
                "max_tokens": 8,
            },
            timeout=20,
        )
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "context_length_exceeded"

        # the rule is selective: the alias model may still go to the cloud
        where, answer = chat(client, PLAIN, model=ALIAS, max_tokens=32)
        assert (where, answer.choices[0].message.content) == (("cloud", "policy"), PLAIN)
        assert route_decisions(agent) == {("edge", "local_only"): 3, ("cloud", "policy"): 1}
    assert len(threaded_echo_hub.finished) == 1


def test_cloud_model_no_hub_serves_falls_back_to_the_edge(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    with (
        edge(nats_server.url, router={"cloud_aliases": {GHOST: "no-such-model"}}) as agent,
        oai(agent) as client,
    ):
        where, answer = chat(client, PLAIN, model=GHOST, max_tokens=8)
        assert where == ("edge", "fallback")
        assert answer.choices[0].message.content != PLAIN
        assert answer.model == GHOST

        where, text, usage = stream_chat(client, PLAIN, model=GHOST, max_tokens=8)
        assert where == ("edge", "fallback")
        assert text and text != PLAIN
        assert 0 < usage.completion_tokens <= 8
        # both fell back on the hub's refusal, not on a timeout
        assert metric(agent, "agl_cloud_failures_total", "kind") == {("unknown_model",): 2}

        # the hub said unknown_model: a healthy refusal, so the circuit stays closed
        assert agent.state.uplink is not None
        assert agent.state.uplink.breaker.state == "closed"
        decisions = route_decisions(agent)
        assert decisions[("edge", "fallback")] == 2
    assert len(threaded_echo_hub.finished) == 0


def test_nothing_asked_for_anything_is_default(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    with edge(nats_server.url) as agent, oai(agent) as client:
        where, answer = chat(client, LOCAL_TEXT)
        assert where == ("edge", "default")
        assert answer.model == LOCAL_MODEL
        where, text, _ = stream_chat(client, LOCAL_TEXT)
        assert where == ("edge", "default")
        assert text
        assert route_decisions(agent) == {("edge", "default"): 2}
    assert len(threaded_echo_hub.finished) == 0


def test_two_hub_workers_share_the_escalated_load(nats_server: NatsServer) -> None:
    settings = hub_settings(nats_server.url)
    with (
        hub_in_thread(settings) as first,
        hub_in_thread(settings) as second,
        edge(nats_server.url) as agent,
        oai(agent) as client,
    ):
        assert first.service_id != second.service_id
        before = hub_request_counts(nats_server.url, expect=2)
        assert set(before) == {first.service_id, second.service_id}
        for i in range(16):
            where, answer = chat(client, f"{PLAIN} {i}", headers=CLOUD, max_tokens=32)
            assert where == ("cloud", "policy")
            assert answer.choices[0].message.content == f"{PLAIN} {i}"
        after = hub_request_counts(nats_server.url, expect=2)
        served = {hub.service_id: len(hub.finished) for hub in (first, second)}
        assert sum(served.values()) == 16
        assert all(n > 0 for n in served.values()), served  # P(one takes all 16) = 2**-15
        # $SRV.STATS, what NATS tooling sees, agrees with each worker's own count
        assert {k: after[k] - before[k] for k in after} == served


def test_real_gguf_hub_answers_escalations(nats_server: NatsServer) -> None:
    # One thread: llama.cpp threads spin, and on 2 cores they would starve the event loop.
    spec = HubModelSpec(name="smollm2-hub", backend="gguf", n_ctx=512, n_gpu_layers=0, n_threads=1)
    with (
        hub_in_thread(hub_settings(nats_server.url, spec, echo_spec("unused-echo"))) as hub,
        edge(nats_server.url, router={"cloud_aliases": {"hub-smol": "smollm2-hub"}}) as agent,
        oai(agent) as client,
    ):
        where, answer = chat(
            client, "What is the capital of France?", model="hub-smol", max_tokens=12
        )
        assert where == ("cloud", "policy")
        content = answer.choices[0].message.content
        assert content and content != "What is the capital of France?"
        assert 0 < answer.usage.completion_tokens <= 12
        assert answer.usage.prompt_tokens > 7  # a real tokenizer and chat template

        where, text, usage = stream_chat(client, "Name a colour.", model="hub-smol", max_tokens=8)
        assert where == ("cloud", "policy")
        assert text
        assert 0 < usage.completion_tokens <= 8

        # log-probabilities survive the escalation, streamed or not
        scored = client.chat.completions.create(
            model="hub-smol",
            messages=[{"role": "user", "content": "Name a fruit."}],
            max_tokens=6,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
        )
        choice = scored.choices[0]
        assert choice.logprobs is not None and choice.logprobs.content
        tokens = choice.logprobs.content
        assert "".join(t.token for t in tokens) == choice.message.content
        assert len(tokens) == scored.usage.completion_tokens
        assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)

        streamed = client.chat.completions.create(
            model="hub-smol",
            messages=[{"role": "user", "content": "Name a fruit."}],
            max_tokens=6,
            temperature=0,
            logprobs=True,
            stream=True,
        )
        pieces, parts = [], []
        for chunk in streamed:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                assert chunk.choices[0].logprobs is not None
                pieces.extend(chunk.choices[0].logprobs.content or [])
        assert "".join(parts) == choice.message.content  # greedy: the same answer
        assert [t.token for t in pieces] == [t.token for t in tokens]
    assert [f.model for f in hub.finished] == ["smollm2-hub"] * 4


def test_metrics_count_every_decision(
    nats_server: NatsServer, threaded_echo_hub: HubService
) -> None:
    router = {
        "cloud_aliases": {ALIAS: CLOUD_MODEL, GHOST: "no-such-model"},
        "rules": [
            {
                "name": "mid-prompts",
                "min_prompt_tokens": 100,
                "max_prompt_tokens": 400,
                "tier": "cloud",
            }
        ],
    }
    with edge(nats_server.url, router=router) as agent, oai(agent) as client:
        assert chat(client, PLAIN, headers=CLOUD)[0] == ("cloud", "policy")
        assert chat(client, PLAIN, model=ALIAS)[0] == ("cloud", "policy")
        assert chat(client, long_prompt(40))[0] == ("cloud", "policy")
        assert chat(client, LOCAL_TEXT)[0] == ("edge", "default")
        assert chat(client, long_prompt(200))[0] == ("cloud", "local_error")
        assert chat(client, PLAIN, model=GHOST)[0] == ("edge", "fallback")
        decisions = route_decisions(agent)
        failures = metric(agent, "agl_cloud_failures_total", "kind")
        answered = metric(agent, "agl_http_requests_total", "route", "status", "tier", "reason")
    # Each request once, by its final decision: the fallback is not also a (cloud, policy).
    assert decisions == {
        ("cloud", "policy"): 3,
        ("edge", "default"): 1,
        ("cloud", "local_error"): 1,
        ("edge", "fallback"): 1,
    }
    assert failures == {("unknown_model",): 1}
    # every answer is also counted once, by its final tier and reason
    chats = {k[2:]: v for k, v in answered.items() if k[:2] == ("/v1/chat/completions", "200")}
    assert chats == {
        ("cloud", "policy"): 3,
        ("edge", "default"): 1,
        ("cloud", "local_error"): 1,
        ("edge", "fallback"): 1,
    }
