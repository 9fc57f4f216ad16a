"""Streamed tokens/s of the edge agent ÷ raw llama-cpp-python on the same GGUF.

Both sides: the bundled SmolLM2-135M-Instruct Q4_1, greedy, 128 new tokens, the same chat
prompt, the same n_threads. The raw side calls ``Llama.create_chat_completion(stream=True)``
in this process; the agent side runs ``edge-agent run`` as its own process and is read with
the official ``openai`` client from this process (so the client's cost is counted too).
Runs alternate (raw, agent, raw, agent …) and each agent run is divided by the raw run just
before it; the ratio printed is the median of those paired ratios, so the drift of a shared
2-core machine (raw alone moves 80-115 tok/s from one minute to the next) cancels out. Its
bootstrap 95 % interval (``paired_stats``) and the ratio of the two medians are printed too.
Single pairs spread widely on 2 cores (0.7-1.2): here 81 runs gave intervals about ±0.02 wide.

    python bench/agent_vs_raw.py [--runs 21] [--threads 2] [--embeddings-first] [--client httpx]

``--client httpx`` reads the agent's stream with a bare ``httpx`` line reader instead of the
``openai`` client: the difference between the two is the official client's own parsing, which
competes with llama.cpp's threads for the same two cores.

``--embeddings-first`` sends one ``/v1/embeddings`` request before measuring: llama.cpp work
off the decoder's thread used to slow the agent's streams about 3x from then on.

The last line is ``ratio <agent/raw>`` (the median paired ratio); the target is ≥ 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import httpx
import llama_cpp
import openai
from agent_process import MESSAGES, NEW_TOKENS, agent_process, streamed_tok_s
from paired_stats import median_with_interval

from shared.model_files import bundled_model_path


def raw_tok_s(llm: llama_cpp.Llama) -> float:
    started = time.perf_counter()
    finish = None
    for chunk in llm.create_chat_completion(
        MESSAGES, max_tokens=NEW_TOKENS, temperature=0, stream=True
    ):
        finish = chunk["choices"][0]["finish_reason"] or finish
    elapsed = time.perf_counter() - started
    assert finish == "length", (
        f"raw run stopped early ({finish}); pick a prompt that runs {NEW_TOKENS} tokens"
    )
    return NEW_TOKENS / elapsed


def bare_tok_s(http: httpx.Client, model: str) -> float:
    """Like ``streamed_tok_s``, read with a bare SSE line reader (only the usage chunk is parsed)."""
    body = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": NEW_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    last = ""
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                last = line
    elapsed = time.perf_counter() - started
    tokens = json.loads(last.removeprefix("data: "))["usage"]["completion_tokens"]
    assert tokens == NEW_TOKENS, f"agent produced {tokens} tokens, expected {NEW_TOKENS}"
    return tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=21, help="measured runs per side (median taken)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="n_threads on both sides"
    )
    parser.add_argument(
        "--stream-interval-ms",
        type=float,
        default=None,
        help="override the agent's stream_interval_ms (default: the agent's default; 0 = one chunk per token)",
    )
    parser.add_argument(
        "--embeddings-first",
        action="store_true",
        help="send one /v1/embeddings request to the agent before measuring",
    )
    parser.add_argument(
        "--client",
        choices=("openai", "httpx"),
        default="openai",
        help="how the agent's stream is read: the official openai client, or a bare httpx reader",
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")

    llm = llama_cpp.Llama(
        model_path=str(bundled_model_path()),
        n_ctx=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    env = (
        {}
        if args.stream_interval_ms is None
        else {"AGL_STREAM_INTERVAL_MS": str(args.stream_interval_ms)}
    )
    with (
        agent_process(threads=args.threads, env=env) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        if args.embeddings_first:
            client.embeddings.create(model=model, input="a sentence to embed first")

        def agent_tok_s() -> float:
            if args.client == "httpx":
                return bare_tok_s(http, model)
            return streamed_tok_s(client, model)

        raw_tok_s(llm)
        agent_tok_s()  # warm-up both
        raw, agent = [], []
        for i in range(args.runs):
            raw.append(raw_tok_s(llm))
            agent.append(agent_tok_s())
            print(
                f"run {i + 1}: raw {raw[-1]:7.1f} tok/s   agent {agent[-1]:7.1f} tok/s", flush=True
            )
    raw_med, agent_med = statistics.median(raw), statistics.median(agent)
    paired, low, high = median_with_interval([a / r for a, r in zip(agent, raw, strict=True)])
    print(f"threads {args.threads}, {NEW_TOKENS} tokens, greedy, median of {args.runs}")
    print(
        f"raw llama-cpp-python {raw_med:.1f} tok/s; edge-agent ({args.client} client, SSE) "
        f"{agent_med:.1f} tok/s; ratio of the medians {agent_med / raw_med:.3f}"
    )
    print(f"median paired ratio {paired:.3f}, 95% bootstrap interval {low:.3f}-{high:.3f}")
    print(f"ratio {paired:.3f}")


if __name__ == "__main__":
    main()
