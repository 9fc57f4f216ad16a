"""Streamed tokens/s of the edge agent ÷ raw llama-cpp-python on the same GGUF.

Both sides: the bundled SmolLM2-135M-Instruct Q4_1, greedy, 128 new tokens, the same chat
prompt, the same n_threads. The raw side calls ``Llama.create_chat_completion(stream=True)``
in this process; the agent side runs ``edge-agent run`` as its own process and is read with
the official ``openai`` client from this process (so the client's cost is counted too).
Runs alternate (raw, agent, raw, agent …) and each agent run is divided by the raw run just
before it; the ratio printed is the median of those paired ratios, so the drift of a shared
2-core machine (raw alone moves 80-115 tok/s from one minute to the next) cancels out. The
ratio of the two medians is printed too.

    python bench/agent_vs_raw.py [--runs 5] [--threads 2] [--embeddings-first]

``--embeddings-first`` sends one ``/v1/embeddings`` request before measuring: llama.cpp work
off the decoder's thread used to slow the agent's streams about 3x from then on.

The last line is ``ratio <agent/raw>`` (the median paired ratio); the target is ≥ 0.95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import llama_cpp
import openai
from agent_process import MESSAGES, NEW_TOKENS, agent_process, streamed_tok_s

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per side (median taken)")
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
    args = parser.parse_args()

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
    with agent_process(threads=args.threads, env=env) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        if args.embeddings_first:
            client.embeddings.create(model=model, input="a sentence to embed first")
        raw_tok_s(llm)
        streamed_tok_s(client, model)  # warm-up both
        raw, agent = [], []
        for i in range(args.runs):
            raw.append(raw_tok_s(llm))
            agent.append(streamed_tok_s(client, model))
            print(
                f"run {i + 1}: raw {raw[-1]:7.1f} tok/s   agent {agent[-1]:7.1f} tok/s", flush=True
            )
    raw_med, agent_med = statistics.median(raw), statistics.median(agent)
    paired = statistics.median(a / r for a, r in zip(agent, raw, strict=True))
    print(f"threads {args.threads}, {NEW_TOKENS} tokens, greedy, median of {args.runs}")
    print(
        f"raw llama-cpp-python {raw_med:.1f} tok/s; edge-agent (openai client, SSE) {agent_med:.1f} tok/s"
        f"; ratio of the medians {agent_med / raw_med:.3f}"
    )
    print(f"ratio {paired:.3f}")


if __name__ == "__main__":
    main()
