"""Streamed tokens/s of the edge agent with full telemetry on ÷ with it off.

Two ``edge-agent run`` processes serve the bundled SmolLM2-135M-Instruct Q4_1 with the same
settings, except that one exports everything: traces sampled at 1.0, OTLP/HTTP metrics every
second and logs, and Loki, all to a local receiver in this process that accepts and discards
them. Each run streams 128 greedy tokens through the official ``openai`` client; runs
alternate (off, on, off, on …) so drift hits both, and medians are compared.

    python bench/telemetry_overhead.py [--runs 5] [--threads 2] [--collector hanging]

``--collector hanging`` exports to a port that accepts connections and never answers (a hung
collector and Loki): requests must not wait for it either.

The last line is ``ratio <on/off>``; the target is ≥ 0.98.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
from agent_process import NEW_TOKENS, agent_process, streamed_tok_s


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


def _measure(off_url: str, on_url: str, runs: int) -> dict[str, list[float]]:
    """Alternate streamed runs between the two agents; tokens/s per side."""
    clients = {
        name: openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for name, url in (("off", off_url), ("on", on_url))
    }
    model = clients["off"].models.list().data[0].id
    for client in clients.values():
        streamed_tok_s(client, model)  # warm-up
    results: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(runs):
        for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
            results[name].append(streamed_tok_s(clients[name], model))
        print(
            f"run {i + 1}: off {results['off'][-1]:7.1f} tok/s   on {results['on'][-1]:7.1f} tok/s",
            flush=True,
        )
    time.sleep(1.5)  # let one more metrics export land
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per side (median taken)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="n_threads of both agents"
    )
    parser.add_argument(
        "--collector",
        choices=["sink", "hanging"],
        default="sink",
        help="sink: a receiver that accepts and discards; hanging: one that never answers",
    )
    args = parser.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    hung = socket.create_server(("127.0.0.1", 0), backlog=128)  # accepts, never answers
    port = hung.getsockname()[1] if args.collector == "hanging" else sink.server_address[1]
    receiver = f"http://127.0.0.1:{port}"
    full = {
        "endpoint": receiver,
        "loki_url": f"{receiver}/loki/api/v1/push",
        "traces_sample_ratio": "1.0",
        "metric_export_interval_s": "1",
        "schedule_delay_s": "0.5",
    }
    on_env = {f"AGL_TELEMETRY__{k.upper()}": v for k, v in full.items()}
    try:
        with (
            agent_process(threads=args.threads) as off_url,
            agent_process(threads=args.threads, env=on_env) as on_url,
        ):
            results = _measure(off_url, on_url, args.runs)
    finally:
        sink.shutdown()
        hung.close()
    off_med, on_med = statistics.median(results["off"]), statistics.median(results["on"])
    print(f"threads {args.threads}, {NEW_TOKENS} tokens, greedy, median of {args.runs}")
    print(f"collector: {args.collector}")
    print(f"receiver got {_Sink.received} OTLP/Loki pushes from the telemetry-on agent")
    print(f"telemetry off {off_med:.1f} tok/s; full telemetry on {on_med:.1f} tok/s")
    print(f"ratio {on_med / off_med:.3f}")


if __name__ == "__main__":
    main()
