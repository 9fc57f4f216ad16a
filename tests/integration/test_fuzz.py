"""Bounded fuzzing: no body the agent reads and no message the hub reads ever gives a 5xx.

Bodies are built from the real field names with arbitrary JSON values (deep, odd, huge, wrong
types); each must get a 2xx or a 4xx in OpenAI's error shape. Hub messages must each get a reply
that follows the protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocol import decode_reply, infer_subject
from shared.subjects import inbox_prefix
from tests.fixtures.agents import RunningAgent
from tests.fixtures.hubs import hub_settings, serving_hub
from tests.fixtures.names import DEVICE, ECHO, MODEL
from tests.fixtures.nats import nats_server

ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates and control characters too
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity too: Python's json reads them
    | st.text(ANY_CHAR, max_size=40)
    | st.sampled_from(["", "\x00", "<|im_end|><|im_start|>system", "user", MODEL, "\u202e"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=24,
)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | VALUES},
        optional={"content": st.text(ANY_CHAR, max_size=200) | VALUES, "name": VALUES},
    ),
    max_size=5,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "/chat/completions": st.fixed_dictionaries(
        {"messages": MESSAGES | VALUES},
        optional={
            "max_tokens": st.integers(-5, 10**7) | VALUES,
            "temperature": VALUES,
            "top_p": VALUES,
            "stop": VALUES,
            "stream": st.booleans() | VALUES,
            "logprobs": VALUES,
            "top_logprobs": VALUES,
            "n": VALUES,
            "seed": VALUES,
            "stream_options": VALUES,
            "model": VALUES,
        },
    ),
    "/completions": st.fixed_dictionaries(
        {"prompt": st.text(ANY_CHAR, max_size=200) | VALUES},
        optional={
            "max_tokens": st.integers(-5, 10**7) | VALUES,
            "echo": VALUES,
            "logprobs": VALUES,
            "stream": st.booleans() | VALUES,
            "suffix": VALUES,
        },
    ),
    "/embeddings": st.fixed_dictionaries(
        {"input": VALUES | st.lists(st.text(max_size=50), max_size=6)},
        optional={"encoding_format": VALUES, "model": VALUES},
    ),
}


def _bounded(path: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {"model": MODEL, **body}
    if "max_tokens" not in body and path != "/embeddings":
        # Without it an answer could run to the context's end. Chat bodies get the newer
        # field, so that a body with no max_tokens at all is still tried.
        body["max_completion_tokens" if path == "/chat/completions" else "max_tokens"] = 4
    for key in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(key), int) and not isinstance(body[key], bool) and body[key] > 4:
            body[key] = 4  # keep generation short; validation of huge values is tested elsewhere
    return body


def _check(agent: RunningAgent, path: str, body: dict[str, Any]) -> None:
    resp = httpx.post(
        f"{agent.v1}{path}",
        content=json.dumps(_bounded(path, body)).encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert resp.status_code < 500, (path, body, resp.text)
    if resp.status_code >= 400:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=FIELDS["/chat/completions"])
def test_chat_bodies_never_give_5xx(agent: RunningAgent, body: dict[str, Any]) -> None:
    _check(agent, "/chat/completions", body)


@FUZZ
@given(body=FIELDS["/completions"])
def test_completion_bodies_never_give_5xx(agent: RunningAgent, body: dict[str, Any]) -> None:
    _check(agent, "/completions", body)


@FUZZ
@given(body=FIELDS["/embeddings"])
def test_embedding_bodies_never_give_5xx(agent: RunningAgent, body: dict[str, Any]) -> None:
    _check(agent, "/embeddings", body)


HUB_MESSAGES = (
    st.binary(max_size=200)
    | VALUES.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {
            "id": st.text(max_size=20) | VALUES,
            "device": st.text(max_size=20) | VALUES,
            "model": st.just(ECHO) | VALUES,
            "kind": st.sampled_from(["chat", "completion", "classify"]) | VALUES,
        },
        optional={
            "messages": VALUES,
            "prompt": VALUES,
            "features": VALUES,
            "params": VALUES,
            "stream": VALUES,
            "v": VALUES,
        },
    ).map(lambda d: json.dumps(d).encode())
)


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with nats_server() as server:
        yield server.url


@settings(  # each example is 10-40 messages to one fresh hub (more per list overruns Hypothesis's
    max_examples=12,  # buffer: most draws were thrown away, and a loaded machine failed too_slow)
    deadline=None,
    suppress_health_check=[
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
        HealthCheck.too_slow,
    ],
)
@given(messages=st.lists(HUB_MESSAGES, min_size=10, max_size=40, unique=True))
def test_hub_messages_always_get_a_protocol_reply(nats_url: str, messages: list[bytes]) -> None:
    async def run() -> None:
        async with serving_hub(hub_settings(nats_url)):
            nc = await nats.connect(nats_url, inbox_prefix=inbox_prefix(DEVICE))
            try:
                for data in messages:
                    reply = await nc.request(infer_subject(DEVICE, ECHO), data, timeout=5)
                    decode_reply(reply.data)  # an error reply or an answer, never junk
            finally:
                await nc.close()

    asyncio.run(run())
