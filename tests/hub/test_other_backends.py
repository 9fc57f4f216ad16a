"""The ONNX and OpenAI-upstream back-ends behind the real hub and NATS."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path

import httpx
import onnx
import pytest

from cloud_hub.backends.openai_upstream import OpenAIUpstreamBackend
from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import Uplink
from shared.protocol import EndMessage, InferRequest
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.nats import NatsServer


def softmax_model(path: Path) -> Path:
    """A 3-feature, 3-class ONNX graph: softmax of the inputs."""
    helper = onnx.helper
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


async def test_onnx_classifies_with_cpu_fallback(
    nats_server: NatsServer, uplink: Uplink, tmp_path: Path
) -> None:
    spec = HubModelSpec(
        name="tiny-cls",
        backend="onnx",
        path=softmax_model(tmp_path / "m.onnx"),
        labels=["cat", "dog", "eel"],
    )  # default providers put CUDA first; this CPU build falls back to CPU
    async with serving_hub(hub_settings(nats_server.url, spec)):
        req = InferRequest(
            id="c1",
            device="d",
            model="tiny-cls",
            kind="classify",
            features=[[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]],
        )
        result = await uplink.complete(req, timeout=5)
    assert result.classifications is not None
    assert [c.label for c in result.classifications] == ["dog", "cat"]
    assert result.classifications[0].confidence > 0.9


def fake_upstream(seen: list[httpx.Request]) -> httpx.MockTransport:
    """Stands in for an OpenAI-compatible server: streams two SSE deltas and usage."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        events = [
            {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
            {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handle)


async def test_openai_upstream_maps_the_model_and_streams(
    nats_server: NatsServer, uplink: Uplink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-test")
    seen: list[httpx.Request] = []
    backend = OpenAIUpstreamBackend(
        "glm-4-plus",
        base_url="http://upstream.test/v1",
        api_key_env="TEST_UPSTREAM_KEY",
        upstream_model="glm-4-plus-0111",
        transport=fake_upstream(seen),
    )
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with serving_hub(hub_settings(nats_server.url), backends={"glm-4-plus": backend}):
        req = infer_request("Hi", model="glm-4-plus", stream=True)
        pieces: AsyncGenerator[str | EndMessage, None] = uplink.stream(
            req, timeout=5, first_chunk_timeout=5, traceparent=tp
        )
        out = [p async for p in pieces]
    assert out[:2] == ["Hel", "lo"]
    end = out[-1]
    assert isinstance(end, EndMessage) and end.usage.completion_tokens == 2
    sent = json.loads(seen[0].content)
    assert sent["model"] == "glm-4-plus-0111" and sent["messages"] == [
        {"role": "user", "content": "Hi"}  # unset fields are not sent upstream
    ]
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert seen[0].headers["traceparent"] == tp
    assert seen[0].url.path == "/v1/chat/completions"
