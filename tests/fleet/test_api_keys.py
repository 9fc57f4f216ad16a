"""HTTP API keys on a real agent (the official openai client), and the non-loopback refusal."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from click.testing import CliRunner

from edge_agent.api.api_keys import bind_refusal, is_loopback
from edge_agent.cli import main as edge_agent
from edge_agent.settings import load_settings
from shared.errors import AglError
from tests.fixtures.agents import RunningAgent, run_agent
from tests.fixtures.names import MODEL

KEY = "sk-edge-test-0001"


@pytest.fixture(scope="module")
def keyed_agent() -> Iterator[RunningAgent]:
    with run_agent(api_keys=[KEY, "sk-edge-test-0002"]) as agent:
        yield agent


def ask(agent: RunningAgent, key: str) -> str | None:
    with openai.OpenAI(base_url=agent.v1, api_key=key, max_retries=0, timeout=60) as client:
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    return reply.choices[0].message.content


def test_a_request_without_the_right_key_gets_openais_401(keyed_agent: RunningAgent) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        ask(keyed_agent, "sk-wrong-key-000")
    assert info.value.status_code == 401
    assert info.value.body == {
        "message": "invalid API key",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    bare = httpx.post(f"{keyed_agent.v1}/chat/completions", json={}, timeout=10)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == 'Bearer realm="edge-agent"'
    assert "send `Authorization: Bearer YOUR_KEY`" in bare.json()["error"]["message"]
    basic = httpx.get(f"{keyed_agent.v1}/models", headers={"authorization": "Basic eDp5"})
    assert basic.status_code == 401


def test_either_configured_key_is_accepted(keyed_agent: RunningAgent) -> None:
    assert ask(keyed_agent, KEY) is not None
    models = httpx.get(
        f"{keyed_agent.v1}/models", headers={"authorization": "Bearer sk-edge-test-0002"}
    )
    assert models.status_code == 200 and models.json()["data"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_stay_open(keyed_agent: RunningAgent, path: str) -> None:
    assert httpx.get(f"{keyed_agent.url}{path}", timeout=10).status_code == 200


def test_keys_come_from_agl_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGL_API_KEYS", " sk-one-000001 ,sk-two-000002")
    keys = load_settings(None).api_keys
    assert [k.get_secret_value() for k in keys] == ["sk-one-000001", "sk-two-000002"]
    assert "sk-one" not in repr(keys)  # and `config show` prints them masked
    monkeypatch.setenv("AGL_API_KEYS", "short")
    with pytest.raises(AglError, match="at least 8 characters"):
        load_settings(None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("edge.local", False),
    ],
)
def test_only_loopback_binds_without_keys(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    refusal = bind_refusal(host, keys=[], insecure=False)
    assert (refusal is None) is loopback
    assert bind_refusal(host, keys=[KEY], insecure=False) is None
    assert bind_refusal(host, keys=[], insecure=True) is None


def test_edge_agent_refuses_a_public_address_without_keys() -> None:
    result = CliRunner().invoke(edge_agent, ["run", "--host", "0.0.0.0", "--port", "0"], env={})
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0 without API keys" in result.output
    assert "AGL_API_KEYS=key1,key2" in result.output and "--insecure-no-auth" in result.output
