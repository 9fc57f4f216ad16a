"""Capability routing end to end: real nats-server, real hub (GGUF back-end), real agent.

With ``router.local_weak = ["tools"]`` a tool request goes to a hub model that advertises
``tools`` (reason ``capability``); with no such model reachable it is a 400 naming ``tools``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import nats
import openai
import pytest

from cloud_hub.serving import HubService
from cloud_hub.settings import HubModelSpec
from shared.capabilities import ModelsReply
from shared.embedded_nats import NatsServer
from shared.protocol import models_subject
from tests.fixtures.agents import RunningAgent, edge, run_agent
from tests.fixtures.calls import oai
from tests.fixtures.hubs import echo_spec, hub_in_thread, hub_settings
from tests.fixtures.names import DEVICE, GGUF, MODEL
from tests.fixtures.waiting import poll

pytestmark = pytest.mark.timeout(240)

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 16}},
    "required": ["city"],
}
TOOLS: list[Any] = [{"type": "function", "function": {"name": "get_weather", "parameters": CITY}}]
ASK: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
WEAK = {"local_weak": ["tools"], "default_cloud_model": GGUF}


@pytest.fixture()
def gguf_and_echo_hub(nats_server: NatsServer) -> Iterator[HubService]:
    """A hub serving the bundled GGUF as ``GGUF`` and the echo stand-in (no capabilities)."""
    gguf = HubModelSpec(name=GGUF, backend="gguf", n_ctx=512, n_gpu_layers=0, n_threads=1)
    with hub_in_thread(hub_settings(nats_server.url, gguf, echo_spec())) as hub:
        yield hub


def _knows_hub_models(agent: RunningAgent, *names: str) -> None:
    poll(
        lambda: agent.state.uplink is not None and set(names) <= set(agent.state.uplink.hub_models),
        10,
        "the agent to fetch the hub's models",
    )


def test_the_hub_advertises_its_models_and_capabilities(
    nats_server: NatsServer, gguf_and_echo_hub: HubService
) -> None:
    async def ask() -> ModelsReply:
        nc = await nats.connect(nats_server.url)
        try:
            msg = await nc.request(models_subject(DEVICE), b"", timeout=5)
        finally:
            await nc.close()
        return ModelsReply.model_validate_json(msg.data)

    models = {m.name: m for m in asyncio.run(ask()).models}
    assert models[GGUF].capabilities == ["tools", "json_schema", "logprobs"]
    assert models[GGUF].context == 512
    assert models[GGUF].kinds == ["chat", "completion"]
    assert models["glm-4-plus"].capabilities == []


def test_local_weak_tools_go_to_the_hub_with_reason_capability(
    nats_server: NatsServer, gguf_and_echo_hub: HubService
) -> None:
    with edge(nats_server.url, router=WEAK) as agent, oai(agent, timeout=120) as client:
        _knows_hub_models(agent, GGUF)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=64,
            seed=1,
        )
        assert (raw.headers["x-agl-tier"], raw.headers["x-agl-reason"]) == ("cloud", "capability")
        resp = raw.parse()
        assert resp.model == GGUF
        assert resp.choices[0].finish_reason == "tool_calls"
        (call,) = resp.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), CITY)

        stream = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=64,
            seed=2,
            stream=True,
        )
        assert stream.headers["x-agl-reason"] == "capability"
        args, finish = "", None
        for chunk in stream.parse():
            for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                args += (tc.function.arguments or "") if tc.function else ""
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        assert finish == "tool_calls"
        jsonschema.validate(json.loads(args), CITY)

        # A request that needs nothing weak stays local.
        plain = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=ASK, max_tokens=4
        )
        assert plain.headers["x-agl-reason"] == "default"
    assert [f.model for f in gguf_and_echo_hub.finished] == [GGUF, GGUF]


def test_no_hub_model_with_tools_is_a_400_naming_tools(nats_server: NatsServer) -> None:
    # The hub serves only the echo stand-in, which advertises no capabilities.
    with (
        hub_in_thread(hub_settings(nats_server.url)),
        edge(nats_server.url, router=WEAK) as agent,
        oai(agent, timeout=120) as client,
    ):
        _knows_hub_models(agent, "glm-4-plus")
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=8
            )
        body = err.value.response.json()["error"]
        assert body["param"] == "tools" and body["code"] == "capability_unavailable"
        assert "the capability tools" in body["message"]
        assert err.value.response.headers["x-agl-reason"] == "capability"


def test_no_hub_at_all_is_a_400_naming_tools() -> None:
    with run_agent(router={"local_weak": ["tools"]}) as agent, oai(agent, timeout=120) as client:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model=MODEL, messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=8
            )
        assert "the capability tools" in str(err.value)
        # tool_choice "none" needs no tools: answered locally
        resp = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=4
        )
        assert resp.choices[0].message.content is not None
