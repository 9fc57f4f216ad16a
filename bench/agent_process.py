"""Shared by the throughput benchmarks: an ``edge-agent run`` subprocess and a timed stream.

with agent_process(threads=2, env={"AGL_STREAM_INTERVAL_MS": "0"}) as url:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    print(streamed_tok_s(client, model))
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import openai

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 128


@contextlib.contextmanager
def agent_process(*, threads: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m edge_agent run --port 0`` (n_ctx 2048) until ready; yield its base URL."""
    full_env = {
        **os.environ,
        "AGL_N_THREADS": str(threads),
        "AGL_N_CTX": "2048",
        "AGL_LOG_LEVEL": "warning",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    assert proc.stderr is not None
    try:
        url = ""
        while not url:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit("edge-agent exited before serving; run it by hand to see why")
            if match := re.search(r"(http://[\d.]+:\d+)/v1", line):
                url = match.group(1)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("edge-agent did not become ready within 60 s")
            time.sleep(0.1)
        # Drain stderr so a chatty agent can never block on a full pipe.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def streamed_tok_s(client: openai.OpenAI, model: str) -> float:
    """Tokens/s of one greedy streamed chat answer of ``NEW_TOKENS`` tokens (usage-counted)."""
    started = time.perf_counter()
    tokens = 0
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=NEW_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    elapsed = time.perf_counter() - started
    assert tokens == NEW_TOKENS, f"agent produced {tokens} tokens, expected {NEW_TOKENS}"
    return tokens / elapsed
