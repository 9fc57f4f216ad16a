"""Tools through the hub's OpenAI upstream back-end: passed through, calls mapped back, and a
malformed call from the (unconstrained) upstream reported to the client, never passed on.

The good upstream is the suite's edge agent (a real OpenAI server that makes tool calls); the
broken one is ``broken_call_upstream``, a stand-in that answers a call whose arguments are not
JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import jsonschema
import openai
import pytest

from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import Uplink
from shared.protocol import EndMessage, InferParams, InferRequest
from shared.tool_calls import ToolSpec, parse_calls
from tests.fixtures.agents import RunningAgent, edge
from tests.fixtures.calls import oai
from tests.fixtures.hubs import hub_in_thread, hub_settings, serving_hub
from tests.fixtures.names import DEVICE, MODEL
from tests.fixtures.nats import NatsServer
from tests.fixtures.waiting import poll

KEY_ENV = "AGL_TEST_UPSTREAM_KEY"
UPSTREAM = "glm-upstream"
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 16}},
    "required": ["city"],
}
FUNCTIONS: list[dict[str, Any]] = [{"name": "get_weather", "parameters": CITY}]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")


def upstream_spec(base_url: str) -> HubModelSpec:
    return HubModelSpec(
        name=UPSTREAM,
        backend="openai",
        base_url=base_url,
        upstream_model=MODEL,
        api_key_env=KEY_ENV,
    )


def tool_request(*, stream: bool) -> InferRequest:
    return InferRequest(
        id=f"tools-{int(stream)}",
        device=DEVICE,
        model=UPSTREAM,
        kind="chat",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],  # type: ignore[list-item]
        params=InferParams(max_tokens=64, temperature=0.0),
        stream=stream,
        tools=FUNCTIONS,
        tool_choice="required",
        parallel_tool_calls=False,
    )


async def test_tools_pass_through_and_calls_come_back(
    agent: RunningAgent, nats_server: NatsServer, uplink: Uplink
) -> None:
    spec = ToolSpec.make(FUNCTIONS, choice="required", parallel=False)
    async with serving_hub(hub_settings(nats_server.url, upstream_spec(agent.v1))):
        answer = await uplink.complete(tool_request(stream=False), timeout=240)
        pieces = [
            p
            async for p in uplink.stream(
                tool_request(stream=True), timeout=240, first_chunk_timeout=240
            )
        ]
    assert isinstance(pieces[-1], EndMessage)
    streamed = "".join(p for p in pieces if isinstance(p, str))
    for text in (answer.text, streamed):
        (call,) = parse_calls(text, spec) or []  # the generic format, checked
        assert call.name == "get_weather"
        jsonschema.validate(call.arguments, CITY)


class _BrokenCall(BaseHTTPRequestHandler):
    """Stands in for an upstream that answers a tool call whose arguments are not JSON."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        type(self).seen.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        call = {"index": 0, "id": "call_x", "type": "function"}
        events = [
            {
                "delta": {
                    "tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]
                }
            },
            {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": Os'}}]}},
            {"delta": {}, "finish_reason": "tool_calls"},
        ]
        for e in events:
            self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, **e}]})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def broken_call_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenCall)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_malformed_call_from_the_upstream_is_reported(nats_server: NatsServer) -> None:
    weak = {"local_weak": ["tools"], "default_cloud_model": UPSTREAM}
    tools: Any = [{"type": "function", "function": FUNCTIONS[0]}]
    with (
        broken_call_upstream() as url,
        hub_in_thread(hub_settings(nats_server.url, upstream_spec(url))),
        edge(nats_server.url, router=weak) as agent,
        oai(agent, timeout=60) as client,
    ):
        poll(lambda: UPSTREAM in agent.state.uplink.hub_models, 10, "the hub's models")  # type: ignore[union-attr]
        for stream in (False, True):
            ask: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Weather in Oslo?"}],
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            }
            if not stream:
                with pytest.raises(openai.InternalServerError) as err:
                    client.chat.completions.create(**ask)
                assert err.value.response.headers["x-agl-reason"] == "capability"
                assert "not valid JSON" in str(err.value)
            else:
                with pytest.raises(openai.APIError) as streamed:
                    for _ in client.chat.completions.create(**ask, stream=True):
                        pass
                assert "not valid JSON" in str(streamed.value)
    sent = _BrokenCall.seen[0]  # what the upstream was asked: the tools, passed through
    assert sent["tools"] == tools
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_models_reply_names_the_upstream_capabilities(nats_server: NatsServer) -> None:
    async def ask() -> Any:
        import nats

        from shared.capabilities import ModelsReply
        from shared.protocol import models_subject

        nc = await nats.connect(nats_server.url)
        try:
            return ModelsReply.model_validate_json(
                (await nc.request(models_subject(DEVICE), b"", timeout=5)).data
            )
        finally:
            await nc.close()

    with hub_in_thread(hub_settings(nats_server.url, upstream_spec("http://127.0.0.1:9/v1"))):
        (info,) = asyncio.run(ask()).models
    assert (info.name, info.capabilities, info.context) == (UPSTREAM, ["tools", "json_schema"], 0)
