"""``agl.v1.Chat`` on a real agent: local and cloud answers, metadata, cancel, deadline, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import openai
import pytest

from cloud_hub.serving import HubService
from edge_agent.scheduler import Scheduler, SerialScheduler
from edge_agent.settings import EdgeSettings
from shared.embedded_nats import embedded_nats
from shared.proto.agl.v1 import chat_pb2 as pb
from shared.proto.agl.v1 import chat_pb2_grpc as pb_grpc
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams, TokenPiece
from tests.fixtures.agents import RunningAgent, edge_settings, run_agent, wait_uplink
from tests.fixtures.calls import metric
from tests.fixtures.hubs import hub_in_thread, hub_settings
from tests.fixtures.names import CLOUD_MODEL, LOCAL_MODEL, PLAIN
from tests.fixtures.waiting import poll

pytestmark = pytest.mark.timeout(120)


def ask(text: str, **params: object) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=LOCAL_MODEL, messages=[pb.ChatMessage(role="user", content=text)], **params
    )


def cancelled(agent: RunningAgent) -> float:
    return sum(metric(agent, "agl_generations_cancelled_total", "model").values())


def test_stream_answers_locally_with_metadata_and_usage(channel: grpc.Channel) -> None:
    call = pb_grpc.ChatStub(channel).Stream(
        ask("Name three colours.", max_tokens=12, temperature=0), timeout=60
    )
    chunks = list(call)
    metadata = dict(call.initial_metadata())
    assert (metadata["x-agl-tier"], metadata["x-agl-reason"]) == ("edge", "default")
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and not last.pieces
    assert last.usage.completion_tokens == sum(len(c.pieces) for c in chunks) <= 12
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert {c.id for c in chunks} == {last.id} and last.id.startswith("chatcmpl-")
    assert all(c.model == LOCAL_MODEL for c in chunks)


def test_grpc_and_rest_give_the_same_greedy_answer(
    channel: grpc.Channel, grpc_agent: RunningAgent
) -> None:
    stub = pb_grpc.ChatStub(channel)
    # Warm up: llama.cpp's numerics depend a little on how much of the prompt its KV cache
    # reuses, so every compared answer follows an identical request.
    stub.Complete(ask("Say hello.", max_tokens=16, temperature=0), timeout=60)
    streamed = "".join(
        p.text
        for c in stub.Stream(ask("Say hello.", max_tokens=16, temperature=0), timeout=60)
        for p in c.pieces
    )
    whole = stub.Complete(
        ask("Say hello.", max_tokens=16, temperature=0, logprobs=True, top_logprobs=2), timeout=60
    )
    with openai.OpenAI(base_url=grpc_agent.v1, api_key="unused", max_retries=0) as client:
        rest = client.chat.completions.create(
            model=LOCAL_MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,
        )
    assert streamed == whole.content == rest.choices[0].message.content
    assert whole.usage.completion_tokens == rest.usage.completion_tokens
    assert len(whole.pieces) == whole.usage.completion_tokens
    assert all(p.HasField("logprob") and len(p.top_logprobs) == 2 for p in whole.pieces)


def test_invalid_requests_get_invalid_argument_with_the_rest_message(
    channel: grpc.Channel,
) -> None:
    stub = pb_grpc.ChatStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(ask("hi", temperature=5), timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("invalid request: temperature:")
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Stream(pb.ChatRequest(model=LOCAL_MODEL), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "messages" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(ask("hi"), timeout=30, metadata=[("x-agl-tier", "moon")])
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(
            pb.ChatRequest(model="nope", messages=[pb.ChatMessage(role="user", content="hi")]),
            timeout=30,
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_cancelling_mid_stream_stops_the_generation(
    channel: grpc.Channel, grpc_agent: RunningAgent
) -> None:
    before = cancelled(grpc_agent)
    call = pb_grpc.ChatStub(channel).Stream(
        ask("Tell me a long story.", max_tokens=400), timeout=60
    )
    first = next(call)
    assert first.pieces
    call.cancel()
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() is grpc.StatusCode.CANCELLED
    poll(lambda: cancelled(grpc_agent) > before, 10, "the generation to be cancelled")
    poll(lambda: grpc_agent.state.queue_depths()[LOCAL_MODEL] == 0, 10, "the queue to drain")


class StalledPrefill:
    """Stands in for a prefill longer than any deadline: the generation waits until it is
    cancelled (30 s at most) before the real model runs. Goes through the scheduler seam."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def scheduler(self, runtime: GgufRuntime, settings: EdgeSettings) -> Scheduler:
        def generate(
            prompt: PreparedPrompt, params: SamplingParams, cancelled: threading.Event
        ) -> Iterator[TokenPiece | GenerationEnd]:
            if cancelled.wait(30):
                self.cancelled.set()
                return
            yield from runtime.generate(prompt, params, cancelled=cancelled)

        return SerialScheduler(generate, max_queue=settings.max_queue)


def test_a_deadline_shorter_than_the_prefill_is_deadline_exceeded() -> None:
    stall = StalledPrefill()
    with run_agent(grpc_port=0, scheduler_factory=stall.scheduler) as agent:
        before = cancelled(agent)
        with (
            grpc.insecure_channel(f"127.0.0.1:{agent.state.grpc_port}") as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            list(pb_grpc.ChatStub(channel).Stream(ask("hi", max_tokens=8), timeout=1.0))
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert stall.cancelled.wait(10), "the generation was not cancelled"
        poll(lambda: cancelled(agent) > before, 10, "the cancellation to be counted")
        poll(lambda: agent.state.queue_depths()[LOCAL_MODEL] == 0, 10, "the queue to drain")


@pytest.fixture()
def cloud_agent() -> Iterator[RunningAgent]:
    """An agent with gRPC on, linked to a real nats-server and an ECHO hub (a test stand-in)."""
    with embedded_nats() as server, hub_in_thread(hub_settings(server.url)) as hub:
        settings = edge_settings(grpc_port=0, hub={"nats_url": server.url})
        with run_agent(settings) as agent:
            wait_uplink(agent)
            agent.hub = hub  # type: ignore[attr-defined]
            yield agent


def test_stream_answers_from_the_cloud_with_metadata(cloud_agent: RunningAgent) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{cloud_agent.state.grpc_port}") as channel:
        call = pb_grpc.ChatStub(channel).Stream(
            ask(PLAIN, max_tokens=32), timeout=60, metadata=[("x-agl-tier", "cloud")]
        )
        chunks = list(call)
        metadata = dict(call.initial_metadata())
    assert (metadata["x-agl-tier"], metadata["x-agl-reason"]) == ("cloud", "policy")
    assert "".join(p.text for c in chunks for p in c.pieces) == PLAIN  # the echo hub's answer
    assert chunks[-1].model == CLOUD_MODEL and chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 9
    hub: HubService = cloud_agent.hub  # type: ignore[attr-defined]
    assert [f.model for f in hub.finished] == [CLOUD_MODEL]
