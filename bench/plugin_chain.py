"""Cost of the sample plugin chain per request ÷ a short local completion.

One run measures both: the three sample plugins (prompt_guard, pii_redact, topic_router)
on a typical chat request through ``PluginChain.on_request`` (p50 over many iterations,
after a warm-up), and a 16-token greedy chat completion through llama-cpp-python on the
bundled SmolLM2 model (median of several). Rounds alternate so drift hits both.

    python bench/plugin_chain.py [--rounds 5] [--iterations 2000] [--threads 2]

The last line is ``ratio <chain p50 / completion median>``; the target is < 0.01.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llama_cpp

from shared.model_files import bundled_model_path
from shared.plugins import PluginChain

ROOT = Path(__file__).resolve().parents[1]
REQUEST = {
    "model": "smollm2-135m-instruct",
    "metadata": {"user": "bench"},
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {
            "role": "user",
            "content": "I'm planning a trip to Lisbon in May with two friends. What are three "
            "things we should not miss, and how many days would you recommend staying?",
        },
    ],
}


def chain_p50_us(chain: PluginChain, iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        chain.on_request(REQUEST)
        samples.append((time.perf_counter_ns() - started) / 1e3)
    return statistics.median(samples)


def completion_ms(llm: llama_cpp.Llama) -> float:
    started = time.perf_counter()
    llm.create_chat_completion(REQUEST["messages"], max_tokens=16, temperature=0)
    return (time.perf_counter() - started) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    chain = PluginChain.from_directory(ROOT / "wasm_plugins")
    llm = llama_cpp.Llama(
        model_path=str(bundled_model_path()), n_ctx=512, n_threads=args.threads, verbose=False
    )
    chain_p50_us(chain, 200)  # warm-up: instance pools, caches
    completion_ms(llm)
    chains, completions = [], []
    for _ in range(args.rounds):
        chains.append(chain_p50_us(chain, args.iterations))
        completions.append(completion_ms(llm))
    chain_us = statistics.median(chains)
    completion = statistics.median(completions)
    print(f"plugins: {', '.join(chain.names())}")
    print(f"chain per request p50: {chain_us:.1f} µs (median of {args.rounds} × {args.iterations})")
    print(f"16-token completion: {completion:.1f} ms (median of {args.rounds})")
    print(f"ratio {chain_us / 1e3 / completion:.4f}")


if __name__ == "__main__":
    main()
