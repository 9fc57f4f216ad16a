"""The OpenAI upstream back-end against real HTTP servers, behind a real hub and NATS.

The upstream is the suite's edge agent: an agent is itself an OpenAI server, so the hub's
``openai`` back-end talks real HTTP and SSE to it. A malformed stream needs a server that
breaks the protocol on purpose: ``malformed_sse_upstream`` is that stand-in.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cloud_hub.cli import main as hubctl
from cloud_hub.errors import BackendError
from cloud_hub.serving import running_hub
from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import CloudFailed, Uplink
from shared.protocol import EndMessage
from tests.fixtures.agents import RunningAgent
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import MODEL
from tests.fixtures.nats import NatsServer

KEY_ENV = "AGL_TEST_UPSTREAM_KEY"
UPSTREAM = "glm-upstream"
"""The name the hub serves the upstream under."""


def upstream_spec(base_url: str, **extra: Any) -> HubModelSpec:
    fields = {"upstream_model": MODEL, "api_key_env": KEY_ENV, **extra}
    return HubModelSpec(name=UPSTREAM, backend="openai", base_url=base_url, **fields)


@pytest.fixture()
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    return "sk-test"


async def test_answers_and_streams_through_a_real_openai_server(
    agent: RunningAgent, nats_server: NatsServer, uplink: Uplink, key: str
) -> None:
    settings = hub_settings(nats_server.url, upstream_spec(agent.v1))
    async with serving_hub(settings) as hub:
        ask = {"model": UPSTREAM, "temperature": 0.0, "max_tokens": 6}
        answer = await uplink.complete(infer_request("Name a colour.", **_params(ask)), timeout=60)
        pieces = [
            p
            async for p in uplink.stream(
                infer_request("Name a colour.", stream=True, **_params(ask)),
                timeout=60,
                first_chunk_timeout=60,
            )
        ]
    end = pieces[-1]
    assert isinstance(end, EndMessage)
    streamed = "".join(p for p in pieces if isinstance(p, str))
    assert answer.text and streamed == answer.text  # greedy: the same answer both ways
    assert 0 < answer.usage.completion_tokens <= 6
    assert end.usage.completion_tokens == answer.usage.completion_tokens
    assert answer.usage.prompt_tokens > 0  # the upstream's own count, passed on
    assert [f.model for f in hub.finished] == [UPSTREAM, UPSTREAM]


def _params(ask: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": ask["model"],
        "temperature": ask["temperature"],
        "max_tokens": ask["max_tokens"],
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_http_error_is_a_clear_failure(
    agent: RunningAgent, nats_server: NatsServer, uplink: Uplink, key: str, stream: bool
) -> None:
    # the agent answers 404 for a model it does not have
    settings = hub_settings(nats_server.url, upstream_spec(agent.v1, upstream_model="no-such"))
    async with serving_hub(settings):
        req = infer_request("hi", model=UPSTREAM, stream=stream)
        with pytest.raises(CloudFailed) as info:
            if stream:
                async for _ in uplink.stream(req, timeout=30, first_chunk_timeout=30):
                    pass
            else:
                await uplink.complete(req, timeout=30)
    assert "upstream answered HTTP 404" in str(info.value)
    assert "no-such" in str(info.value)  # the upstream's own message is passed on
    assert not info.value.tokens_sent


class _MalformedSse(BaseHTTPRequestHandler):
    """Stands in for an upstream that breaks SSE: one good chunk, then a broken event."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        good = '{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}'
        self.wfile.write(f"data: {good}\n\ndata: {{oops\n\n".encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def malformed_sse_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MalformedSse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_malformed_sse_stream_fails_the_answer_after_what_was_sent(
    nats_server: NatsServer, uplink: Uplink, key: str
) -> None:
    with malformed_sse_upstream() as url:
        async with serving_hub(hub_settings(nats_server.url, upstream_spec(url))):
            stream = uplink.stream(
                infer_request("hi", model=UPSTREAM, stream=True), timeout=10, first_chunk_timeout=10
            )
            assert await anext(stream) == "Hel"
            with pytest.raises(CloudFailed) as info:
                await anext(stream)
    assert "upstream sent a malformed SSE event" in str(info.value)
    assert info.value.tokens_sent  # "Hel" went out: the edge must not answer again locally


async def test_a_missing_key_variable_stops_the_hub_naming_it(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    settings = hub_settings(nats_server.url, upstream_spec("http://127.0.0.1:9/v1"))
    with pytest.raises(BackendError) as info:
        async with running_hub(settings):
            pass
    assert f"environment variable {KEY_ENV} is empty" in str(info.value)
    assert "export the upstream API key" in str(info.value)
    # and `hubctl serve --check` says so before anything starts
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[[models]]\nname = "{UPSTREAM}"\nbackend = "openai"\n'
        f'base_url = "http://127.0.0.1:9/v1"\napi_key_env = "{KEY_ENV}"\n'
    )
    result = CliRunner().invoke(hubctl, ["serve", "--check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"environment variable {KEY_ENV} is empty" in result.output
