"""Grammar-constrained decoding cost: tok/s with a JSON-schema grammar ÷ tok/s without.

Same GGUF (the bundled SmolLM2-135M), same prompt, greedy, runs interleaved so machine load hits
both alike; medians of several runs. The last line is the ratio (target ≥ 0.8).

    python bench/structured.py [--runs 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from shared.model_files import bundled_model_path
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.grammar import schema_source
from shared.runtimes.types import GenerationEnd, SamplingParams

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


def tok_s(rt: GgufRuntime, prompt, params: SamplingParams) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    end = None
    for event in rt.generate(prompt, params):
        if isinstance(event, GenerationEnd):
            end = event
    assert end is not None
    return end.completion_tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=96)
    args = ap.parse_args()
    rt = GgufRuntime.load(bundled_model_path(), n_ctx=2048, n_threads=args.threads)
    prompt = rt.prepare_chat(MESSAGES)
    free = SamplingParams(max_tokens=args.tokens, temperature=0)
    constrained = SamplingParams(
        max_tokens=args.tokens, temperature=0, grammar=schema_source(SCHEMA)
    )
    tok_s(rt, prompt, free), tok_s(rt, prompt, constrained)  # warm up
    a: list[float] = []
    b: list[float] = []
    for _ in range(args.runs):
        a.append(tok_s(rt, prompt, free))
        b.append(tok_s(rt, prompt, constrained))
    fa, fb = statistics.median(a), statistics.median(b)
    print(f"unconstrained: {fa:.1f} tok/s (median of {args.runs})")
    print(f"json-schema grammar: {fb:.1f} tok/s (median of {args.runs})")
    print(f"constrained / unconstrained tok/s: {fb / fa:.2f}")


if __name__ == "__main__":
    main()
