"""Two GGUF models in one process (the all-in-one's hub and agent, an agent's extra model):
the first model's single-stream tokens/s ÷ raw llama-cpp-python, before and after the second
model has decoded.

llama-cpp-python's ggml uses OpenMP, and a second live thread running llama.cpp made every
stream of the process about 3x slower (``shared.runtimes.compute_thread``). All decoders of a
process now step on one compute thread; the raw side runs on that thread too, so it is measured
under the same rule. Runs alternate (raw, decoder, …) and the ratio is the median of the paired
ratios, as in ``agent_vs_raw.py``.

    python bench/shared_compute.py [--runs 7] [--threads 2]

The last line is ``ratio <first model after the second ran ÷ raw>``; the target is ≥ 0.95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import llama_cpp
from agent_process import MESSAGES, NEW_TOKENS

from shared.model_files import bundled_model_path
from shared.runtimes.batched import BatchedDecoder
from shared.runtimes.compute_thread import compute_thread
from shared.runtimes.gguf import GgufRuntime
from shared.runtimes.slots import DecodeJob
from shared.runtimes.types import SamplingParams, TokenPiece


def raw_tok_s(llm: llama_cpp.Llama) -> float:
    def run() -> float:
        started = time.perf_counter()
        for _ in llm.create_chat_completion(
            MESSAGES, max_tokens=NEW_TOKENS, temperature=0, stream=True
        ):
            pass
        return NEW_TOKENS / (time.perf_counter() - started)

    return compute_thread().call(run).result()


def decoder_tok_s(decoder: BatchedDecoder, runtime: GgufRuntime, max_tokens: int) -> float:
    done, tokens = threading.Event(), [0]

    def post(item: object) -> None:
        if isinstance(item, TokenPiece):
            tokens[0] += 1

    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    started = time.perf_counter()
    decoder.submit(DecodeJob(runtime.prepare_chat(MESSAGES), params, post, done.set))
    done.wait()
    assert tokens[0] == max_tokens, f"the decoder stopped after {tokens[0]} tokens"
    return tokens[0] / (time.perf_counter() - started)


def paired(llm: llama_cpp.Llama, decoder: BatchedDecoder, rt: GgufRuntime, runs: int) -> float:
    ratios = []
    for _ in range(runs):
        raw = raw_tok_s(llm)
        ours = decoder_tok_s(decoder, rt, NEW_TOKENS)
        ratios.append(ours / raw)
        print(f"  raw {raw:7.1f} tok/s   first model {ours:7.1f} tok/s", flush=True)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="paired runs per phase")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads")
    args = parser.parse_args()
    path = bundled_model_path()
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    first_rt = GgufRuntime.load(path, n_ctx=2048, n_threads=args.threads)
    second_rt = GgufRuntime.load(path, n_ctx=2048, n_threads=args.threads)
    first = BatchedDecoder(first_rt, parallel=4)
    second = BatchedDecoder(second_rt, parallel=4)
    try:
        raw_tok_s(llm)
        decoder_tok_s(first, first_rt, NEW_TOKENS)  # warm-up
        print("the first model alone:")
        alone = paired(llm, first, first_rt, args.runs)
        decoder_tok_s(second, second_rt, 16)
        print("after the second model decoded:")
        after = paired(llm, first, first_rt, args.runs)
    finally:
        first.close()
        second.close()
        first_rt.close()
        second_rt.close()
    print(f"threads {args.threads}, {NEW_TOKENS} tokens, greedy, median of {args.runs} pairs")
    print(f"ratio_alone {alone:.3f}; ratio_after_second_model {after:.3f}")
    print(f"ratio {after:.3f}")


if __name__ == "__main__":
    main()
