"""Cost of the sample plugin chain: per request ÷ a short local completion, and on streamed TTFT.

One run measures both:

1. the three sample plugins (prompt_guard, pii_redact, topic_router) on a typical chat
   request through ``PluginChain.on_request`` (p50 over many iterations, after a warm-up),
   and a 16-token greedy chat completion through llama-cpp-python on the bundled SmolLM2
   model (median of several); ``chain ratio`` is their quotient, target < 0.01;
2. the time to first token of a streamed chat answer through two real agents side by side
   (``edge-agent run``: one without plugins, one with the three samples, so streams hold back
   what ``pii_redact``'s hold hints ask for, at most its declared window), measured with the official ``openai`` client as the time
   from sending the request to the first SSE chunk with text (median of ``--ttft-runs``,
   requests alternating between the two agents so drift hits both).

    python bench/plugin_chain.py [--rounds 5] [--iterations 2000] [--threads 2] [--ttft-runs 9]

The last line is ``ttft ratio <with plugins / without>``; the target is ≤ 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llama_cpp
import openai
from agent_process import MESSAGES, agent_process

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


def ttft_ms(client: openai.OpenAI, model: str) -> float:
    """Milliseconds from sending a streamed chat request to the first chunk that carries text."""
    started = time.perf_counter()
    first = None
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=48,
        temperature=0,
        stream=True,
    )
    for chunk in stream:  # read to the end, so the next request finds the model idle
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    assert first is not None, "the agent streamed no text"
    return first * 1e3


def ttft_side_by_side(threads: int, runs: int) -> tuple[float, float]:
    """Median TTFT (ms) of an agent without plugins and of one with the three samples."""
    plugins = {"AGL_PLUGINS_DIR": str(ROOT / "wasm_plugins")}
    with (
        agent_process(threads=threads) as bare_url,
        agent_process(threads=threads, env=plugins) as plugged_url,
    ):
        bare = openai.OpenAI(base_url=f"{bare_url}/v1", api_key="unused", max_retries=0)
        plugged = openai.OpenAI(base_url=f"{plugged_url}/v1", api_key="unused", max_retries=0)
        model = bare.models.list().data[0].id
        ttft_ms(bare, model), ttft_ms(plugged, model)  # warm-up both
        without, with_ = [], []
        for i in range(runs):
            without.append(ttft_ms(bare, model))
            with_.append(ttft_ms(plugged, model))
            print(f"ttft run {i + 1}: without {without[-1]:6.1f} ms   with {with_[-1]:6.1f} ms")
    return statistics.median(without), statistics.median(with_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ttft-runs", type=int, default=9)
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
    print(f"chain ratio {chain_us / 1e3 / completion:.4f} (target < 0.01)")
    del llm  # free the cores for the agents

    without, with_ = ttft_side_by_side(args.threads, args.ttft_runs)
    print(
        f"streamed TTFT, median of {args.ttft_runs}: without plugins {without:.1f} ms, "
        f"with the samples {with_:.1f} ms (hold hints, window at most {chain.stream_window} characters)"
    )
    print(f"ttft ratio {with_ / without:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
