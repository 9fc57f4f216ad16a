"""Streamed tokens/s of the edge agent with full telemetry on ÷ with it off.

Two ``edge-agent run`` processes serve the bundled SmolLM2-135M-Instruct Q4_1 with the same
settings, except that one exports everything: traces sampled at 1.0, OTLP/HTTP metrics every
second and logs, and Loki, all to a local receiver in this process that accepts and discards
them. Each run streams 128 greedy tokens through the official ``openai`` client; runs
alternate (off, on, off, on …) so drift hits both, and medians are compared.

    python bench/telemetry_overhead.py [--runs 5] [--threads 2]

The last line is ``ratio <on/off>``; the target is ≥ 0.98.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 128


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP and Loki pushes and throws them away (counts requests)."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_agent(threads: int, telemetry: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "AGL_N_THREADS": str(threads),
        "AGL_N_CTX": "2048",
        "AGL_LOG_LEVEL": "warning",
        **{f"AGL_TELEMETRY__{k.upper()}": v for k, v in telemetry.items()},
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    url = ""
    while not url:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("edge-agent exited before serving")
        if match := re.search(r"(http://[\d.]+:\d+)/v1", line):
            url = match.group(1)
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit("edge-agent did not become ready")
        time.sleep(0.1)
    # Drain stderr so a chatty agent can never block on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, url


def tok_s(client: openai.OpenAI, model: str) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per side (median taken)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="n_threads of both agents"
    )
    args = parser.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{sink.server_address[1]}"
    full = {
        "endpoint": receiver,
        "loki_url": f"{receiver}/loki/api/v1/push",
        "traces_sample_ratio": "1.0",
        "metric_export_interval_s": "1",
        "schedule_delay_s": "0.5",
    }
    procs: list[subprocess.Popen[str]] = []
    try:
        off_proc, off_url = start_agent(args.threads, {})
        procs.append(off_proc)
        on_proc, on_url = start_agent(args.threads, full)
        procs.append(on_proc)
        clients = {
            name: openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            for name, url in (("off", off_url), ("on", on_url))
        }
        model = clients["off"].models.list().data[0].id
        for client in clients.values():
            tok_s(client, model)  # warm-up
        results: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(args.runs):
            for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                results[name].append(tok_s(clients[name], model))
            print(
                f"run {i + 1}: off {results['off'][-1]:7.1f} tok/s   on {results['on'][-1]:7.1f} tok/s",
                flush=True,
            )
        time.sleep(1.5)  # let one more metrics export land
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        sink.shutdown()
    off_med, on_med = statistics.median(results["off"]), statistics.median(results["on"])
    print(f"threads {args.threads}, {NEW_TOKENS} tokens, greedy, median of {args.runs}")
    print(f"receiver got {_Sink.received} OTLP/Loki pushes from the telemetry-on agent")
    print(f"telemetry off {off_med:.1f} tok/s; full telemetry on {on_med:.1f} tok/s")
    print(f"ratio {on_med / off_med:.3f}")


if __name__ == "__main__":
    main()
