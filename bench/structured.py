"""Grammar-constrained decoding cost: tok/s with a JSON-schema grammar ÷ tok/s without.

Measured on the path the agent and the hub serve with, the batched decoder
(``shared.runtimes.batched``, one slot): same GGUF (the bundled SmolLM2-135M), same prompt,
greedy, runs interleaved so machine load hits both alike; medians of several runs. The grammar
checks the token the sampler chain picked and filters the whole vocabulary only when it rejects
it (llama.cpp's common sampler does the same). The last line is the ratio (target ≥ 0.8).

    python bench/structured.py [--runs 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from shared.model_files import bundled_model_path
from shared.runtimes.batched import BatchedDecoder
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.grammar import schema_source
from shared.runtimes.slots import DecodeJob
from shared.runtimes.types import GenerationEnd, PreparedPrompt, SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
        "bio": {"type": "string"},
    },
    "required": ["name", "age", "hobbies", "bio"],
}
MESSAGES = [{"role": "user", "content": "Describe a person as JSON with a long bio."}]


def tok_s(decoder: BatchedDecoder, prompt: PreparedPrompt, params: SamplingParams) -> float:
    """Generated tokens per second of one request (prompt read included, as a client sees it)."""
    ends: list[object] = []
    done = threading.Event()
    start = time.perf_counter()
    decoder.submit(DecodeJob(prompt, params, ends.append, done.set))
    done.wait()
    elapsed = time.perf_counter() - start
    end = ends[-1]
    assert isinstance(end, GenerationEnd), f"generation failed: {end}"
    return end.completion_tokens / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=96)
    args = ap.parse_args()
    rt = GgufRuntime.load(bundled_model_path(), n_ctx=2048, n_threads=args.threads)
    decoder = BatchedDecoder(rt, parallel=1)
    prompt = rt.prepare_chat(MESSAGES)
    free = SamplingParams(max_tokens=args.tokens, temperature=0)
    constrained = SamplingParams(
        max_tokens=args.tokens, temperature=0, grammar=schema_source(SCHEMA)
    )
    tok_s(decoder, prompt, free), tok_s(decoder, prompt, constrained)  # warm up
    a: list[float] = []
    b: list[float] = []
    for _ in range(args.runs):
        a.append(tok_s(decoder, prompt, free))
        b.append(tok_s(decoder, prompt, constrained))
    decoder.close()
    fa, fb = statistics.median(a), statistics.median(b)
    print(f"unconstrained: {fa:.1f} tok/s (median of {args.runs})")
    print(f"json-schema grammar: {fb:.1f} tok/s (median of {args.runs})")
    print(f"constrained / unconstrained tok/s: {fb / fa:.2f}")


if __name__ == "__main__":
    main()
