"""What an operator sees of a real agent: the hub link, /status, /v1/models, the access log,
``edge-agent ps``/``top``, and a model that does not load.

The agent is real (bundled model, n_ctx 512); NATS is a real nats-server started on the port
the agent was already trying, so the link's way back is the real one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from edge_agent.cli import main as edge_agent
from edge_agent.settings import load_settings
from shared.embedded_nats import embedded_nats, free_port
from tests.fixtures.agents import RunningAgent, run_agent
from tests.fixtures.calls import metric
from tests.fixtures.names import MODEL
from tests.fixtures.waiting import poll

pytestmark = pytest.mark.timeout(120)


def _status(agent: RunningAgent) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{agent.url}/status", timeout=10).json()
    return data


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_a_broken_hub_link_is_logged_shown_and_its_return_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    settings = load_settings(
        None,
        n_ctx=512,
        n_threads=1,
        hub={"nats_url": f"nats://127.0.0.1:{port}"},
        router={"cloud_aliases": {"big": "glm-4-plus"}},
    )
    caplog.set_level(logging.INFO, logger="edge_agent.uplink")
    with run_agent(settings) as agent:
        poll(
            lambda: any(
                m.startswith("hub link down: cannot reach NATS")
                for m in _messages(caplog, "edge_agent.uplink")
            ),
            30,
            "the hub link's down line",
            every=0.1,
        )
        hub = _status(agent)["hub"]
        assert hub["connected"] is False and hub["circuit"] == "open"
        assert hub["servers"] == [f"nats://127.0.0.1:{port}"]
        assert hub["last_error"] and hub["down_since"] is not None
        assert hub["budget"] == {"daily_tokens": None, "spent_today": 0, "remaining_today": None}
        assert metric(agent, "agl_circuit_state", "peer") == {("hub",): 2.0}
        assert httpx.get(f"{agent.url}/readyz", timeout=10).status_code == 200
        verbose = httpx.get(f"{agent.url}/healthz?verbose=1", timeout=10).json()
        assert verbose["health"] == "ok" and verbose["hub"]["connected"] is False
        cards = {m["id"]: m for m in httpx.get(f"{agent.v1}/models", timeout=10).json()["data"]}
        assert cards[MODEL]["tier"] == "edge" and cards[MODEL]["ready"] is True
        assert cards["big"]["tier"] == "cloud" and cards["big"]["hub_reachable"] is False
        assert cards["big"]["cloud_model"] == "glm-4-plus"

        with embedded_nats(port=port):
            poll(lambda: _status(agent)["hub"]["connected"], 30, "the link to come back")
            assert _status(agent)["hub"]["circuit"] == "closed"
            assert metric(agent, "agl_circuit_state", "peer") == {("hub",): 0.0}
            big = httpx.get(f"{agent.v1}/models/big", timeout=10).json()
            assert big["hub_reachable"] is True
            assert any(
                m.startswith("hub link up again: connected to NATS")
                for m in _messages(caplog, "edge_agent.uplink")
            )
        poll(
            lambda: any(
                m.startswith("hub link down: lost NATS")
                for m in _messages(caplog, "edge_agent.uplink")
            ),
            30,
            "the lost-link line",
            every=0.1,
        )
    down = [m for m in _messages(caplog, "edge_agent.uplink") if m.startswith("hub link down")]
    assert len(down) == 2  # once per outage, not once per retry


def test_status_ps_and_top_describe_a_real_agent(agent: RunningAgent) -> None:
    httpx.post(
        f"{agent.v1}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        timeout=60,
    ).raise_for_status()
    status = _status(agent)
    assert status["status"] == "ready" and status["hub"] == {
        "configured": False,
        "default_cloud_model": "glm-4-plus",
        "cloud_aliases": {},
    }
    (model,) = status["models"]
    assert (
        model["id"] == MODEL and model["n_ctx"] == 512 and model["slots"] == 4
    )  # default parallel
    assert len(model["sha256"]) == 64 and model["file_bytes"] > 1_000_000

    ps = CliRunner().invoke(edge_agent, ["ps", "--url", agent.url])
    assert ps.exit_code == 0, ps.output
    assert ps.output.splitlines()[0].split() == [
        "MODEL",
        "TASK",
        "READY",
        "SIZE",
        "CONTEXT",
        "SLOTS",
        "QUEUE",
        "SHA256",
    ]
    assert f"{MODEL}  chat  yes" in ps.output and "hub link: not configured" in ps.output

    top = CliRunner().invoke(edge_agent, ["top", "--once", "--interval", "0.2", "--url", agent.url])
    assert top.exit_code == 0, top.output
    lines = [" ".join(line.split()) for line in top.output.splitlines()]
    assert lines[0].startswith(f"edge-agent top {agent.url}")
    assert any(line.startswith("edge default ") for line in lines)  # the chat above
    assert any(line.startswith("time to first token p50 ") for line in lines)
    assert f"{MODEL} 0" in lines and "circuit: -" in lines


def test_ps_without_an_agent_says_how_to_start_one() -> None:
    result = CliRunner().invoke(edge_agent, ["ps", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "no agent answers at" in result.output and "edge-agent run" in result.output


def test_every_request_gets_one_structured_access_line(
    agent: RunningAgent, caplog: pytest.LogCaptureFixture
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caplog.set_level(logging.INFO, logger="edge_agent.access")
    httpx.post(
        f"{agent.v1}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        timeout=60,
    ).raise_for_status()
    httpx.get(f"{agent.v1}/models/nope", timeout=10)
    poll(
        lambda: len([r for r in caplog.records if r.name == "edge_agent.access"]) >= 2,
        10,
        "two access lines",
    )
    records = [r for r in caplog.records if r.name == "edge_agent.access"]
    chat, missing = records[0], records[1]
    assert chat.levelno == logging.INFO
    assert chat.getMessage().startswith("POST /v1/chat/completions 200 edge/default ")
    fields = vars(chat)
    assert fields["http_method"] == "POST" and fields["http_status"] == 200
    assert (fields["tier"], fields["reason"]) == ("edge", "default")
    assert fields["duration_ms"] > 0 and fields["trace_id"] == trace_id
    assert fields["model"] == MODEL
    assert fields["prompt_tokens"] > 0 and 0 < fields["completion_tokens"] <= 4
    assert 0 < fields["ttft_ms"] <= fields["duration_ms"]
    assert vars(missing)["http_status"] == 404 and vars(missing)["http_path"] == "/v1/models/nope"


# --- a model that does not load -------------------------------------------------------------


def _run_agent_process(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--port", "0", *args],
        cwd=tmp_path,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the agent kept running with a broken model:\n{out}")
    return proc.returncode, out


@pytest.fixture()
def bad_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)  # the magic, then nothing llama.cpp can read
    return path


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_an_invalid_gguf_stops_the_agent_and_says_where_its_path_came_from(
    tmp_path: Path, bad_gguf: Path, source: str
) -> None:
    args: list[str] = []
    env: dict[str, str] = {}
    if source == "flag":
        args = ["--model-path", str(bad_gguf)]
        expected = "its path came from flag --model-path"
    elif source == "env":
        env = {"AGL_MODEL_PATH": str(bad_gguf)}
        expected = "its path came from env AGL_MODEL_PATH"
    else:
        cfg = tmp_path / "edge.toml"
        cfg.write_text(f'model_path = "{bad_gguf}"\n')
        args = ["--config", str(cfg)]
        expected = f"its path came from `model_path` in {cfg}"
    code, out = _finish(_run_agent_process(tmp_path, *args, env=env))
    assert code == 1, out
    assert f"llama.cpp could not load {bad_gguf}" in out
    assert expected in out
    assert "keep_running_on_load_error" in out


def test_keep_running_on_load_error_keeps_serving_health_and_status(
    tmp_path: Path, bad_gguf: Path
) -> None:
    proc = _run_agent_process(
        tmp_path, "--model-path", str(bad_gguf), "--keep-running-on-load-error"
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = None
    for line in proc.stdout:
        lines.append(line)
        if "serving" in line and "http://" in line:
            url = line.split("on ", 1)[1].strip().removesuffix("/v1")
        if "model loading failed" in line:
            break
    assert url is not None, "".join(lines)
    try:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        status = httpx.get(f"{url}/status", timeout=10).json()
        assert status["status"] == "failed" and "could not load" in status["load_error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code, out = _finish(proc)
    assert code == 0, out
    # uvicorn's own lines went through the JSON formatter too
    started = [line for line in lines if "Started server process" in line]
    assert started and json.loads(started[0])["logger"] == "uvicorn.error"
