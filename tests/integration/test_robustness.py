"""Load, disconnects, timeouts, readiness and shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from edge_agent.models import load_runtime
from edge_agent.scheduler import Scheduler
from edge_agent.settings import EdgeSettings, ModelSpec
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.types import GenerationEnd
from tests.fixtures.agents import run_agent
from tests.fixtures.names import MODEL
from tests.fixtures.waiting import poll

LONG = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Tell me a very long story."}],
    "max_tokens": 400,
    "temperature": 0,
    "stream": True,
}


STALL_TOKENS = 450
"""A request for this many tokens stalls (see ``RecordingScheduler``) until it is cancelled."""


class RecordingScheduler:
    """The real serial scheduler, plus a record of how each generation ended.

    With ``stall``, it also stands in for a generation that produces nothing: a request for
    ``STALL_TOKENS`` tokens waits, token-less, until the agent cancels it (a timeout), so a
    deadline is exceeded whatever the machine's speed.
    """

    def __init__(
        self, runtime: GgufRuntime, settings: EdgeSettings, *, stall: bool = False
    ) -> None:
        self.ends: list[GenerationEnd] = []
        self.finished = threading.Event()

        def generate(prompt, params, cancelled):  # type: ignore[no-untyped-def]
            if stall and params.max_tokens == STALL_TOKENS:
                assert cancelled is not None and cancelled.wait(60), "never cancelled"
            for event in runtime.generate(prompt, params, cancelled=cancelled):
                if isinstance(event, GenerationEnd):
                    self.ends.append(event)
                    self.finished.set()
                yield event

        from edge_agent.scheduler import SerialScheduler

        self.inner: Scheduler = SerialScheduler(generate, max_queue=settings.max_queue)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def test_client_disconnect_stops_generation_within_a_few_tokens() -> None:
    made: list[RecordingScheduler] = []

    def factory(runtime: GgufRuntime, settings: EdgeSettings) -> Scheduler:
        made.append(RecordingScheduler(runtime, settings))
        return made[-1]  # type: ignore[return-value]

    # stream_interval_ms 0: one SSE chunk per token, so chunks count tokens
    with run_agent(scheduler_factory=factory, stream_interval_ms=0) as agent:
        seen = 0
        with httpx.stream("POST", f"{agent.v1}/chat/completions", json=LONG, timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    seen += 1
                if seen >= 5:
                    break
        # leaving the block closes the connection mid-stream
        assert made[0].finished.wait(10)
        end = made[0].ends[-1]
        assert end.finish_reason == "cancelled"
        assert end.completion_tokens <= seen + 10 < LONG["max_tokens"]


def test_full_queue_answers_503_with_retry_after() -> None:
    with (
        run_agent(max_queue=0, parallel=1) as agent,
        httpx.stream("POST", f"{agent.v1}/chat/completions", json=LONG, timeout=30) as resp,
    ):
        lines = resp.iter_lines()
        next(line for line in lines if '"content"' in line)  # the first request is generating
        busy = httpx.post(
            f"{agent.v1}/chat/completions", json={**LONG, "stream": False}, timeout=30
        )
        assert busy.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["code"] == "queue_full"


def test_request_timeout_gives_504_and_stream_error_event() -> None:
    made: list[RecordingScheduler] = []

    def factory(runtime: GgufRuntime, settings: EdgeSettings) -> Scheduler:
        made.append(RecordingScheduler(runtime, settings, stall=True))
        return made[-1]  # type: ignore[return-value]

    with (
        run_agent(request_timeout_s=2, scheduler_factory=factory) as agent,
        openai.OpenAI(base_url=agent.v1, api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(**{**LONG, "stream": False, "max_tokens": STALL_TOKENS})
        assert info.value.status_code == 504
        assert "request_timeout_s" in str(info.value)
        with (
            pytest.raises(openai.APIError, match="request_timeout_s"),
            client.chat.completions.create(**{**LONG, "max_tokens": STALL_TOKENS}) as stream,
        ):
            for _ in stream:
                pass
        # both timed-out generations were cancelled and left the queue
        poll(
            lambda: agent.state.scheduler_for(MODEL).queue_depth == 0,
            30,
            "the timed-out generations to leave the queue",
        )
        # still serving afterwards (a real 2-token answer, well within the 2 s deadline)
        ok = httpx.post(
            f"{agent.v1}/chat/completions", json={**LONG, "stream": False, "max_tokens": 2}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["usage"]["completion_tokens"] <= 2


def test_readyz_is_503_while_the_model_loads() -> None:
    gate = threading.Event()

    def slow_disk_loader(spec: ModelSpec, settings: EdgeSettings):  # type: ignore[no-untyped-def]
        """Stands in for a slow disk: waits for the test before the real load."""
        gate.wait(30)
        return load_runtime(spec, settings)

    with run_agent(loader=slow_disk_loader, wait_ready=False) as agent:
        loading = httpx.get(f"{agent.url}/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        assert httpx.get(f"{agent.url}/healthz").status_code == 200
        early = httpx.post(
            f"{agent.v1}/chat/completions", json={**LONG, "stream": False, "max_tokens": 2}
        )
        assert early.status_code == 503 and early.json()["error"]["code"] == "model_not_ready"
        gate.set()
        poll(lambda: httpx.get(f"{agent.url}/readyz").status_code == 200, 30, "/readyz 200")
        ok = httpx.post(
            f"{agent.v1}/chat/completions",
            json={**LONG, "stream": False, "max_tokens": 2},
            timeout=60,
        )
        assert ok.status_code == 200, ok.text


@pytest.fixture()
def agent_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    # a drain long enough for any machine: the drain, not its speed, is under test
    env = {**os.environ, "AGL_N_CTX": "512", "AGL_N_THREADS": "2", "AGL_DRAIN_TIMEOUT_S": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if match := re.search(r"(http://127\.0\.0\.1:\d+)/v1", line):
                url = match.group(1)
        assert url, "the agent did not print its URL"
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_sigterm_drains_in_flight_streams_then_exits(
    agent_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = agent_process
    body = {**LONG, "max_tokens": 30}
    lines: list[str] = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as resp:
        iterator = resp.iter_lines()
        lines.append(next(line for line in iterator if '"content"' in line))
        proc.send_signal(signal.SIGTERM)
        lines.extend(line for line in iterator if line)
    assert lines[-1] == "data: [DONE]"
    assert proc.wait(150) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")
