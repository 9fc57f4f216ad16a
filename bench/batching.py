"""Continuous batching: the agent's aggregate tok/s at 1, 2, 4 and 8 streams ÷ the engine limit.

Side by side in one run, on the bundled SmolLM2-135M, greedy, 128 new tokens per stream:

* raw llama-cpp-python, one stream (``Llama.create_chat_completion(stream=True)``);
* the engine limit: the bare low-level batched loop (``llama_batch`` with k sequences,
  ``llama_decode``, a greedy sampler per sequence; prompts read first), no serving at all;
* the agent (``edge-agent run``, ``parallel = 8``) read with the official ``openai`` client,
  k concurrent streamed requests, aggregate = all tokens ÷ wall time of the k streams.

Runs alternate per k (engine, agent, engine, agent …); medians are compared. The last lines are
``agg_ratio_4 = agent ÷ engine at 4`` and ``agg_ratio_8``; the target is ≥ 0.85.
``--hub`` adds the hub: aggregate tok/s over NATS at 8 concurrent requests on its GGUF back-end
(``concurrency = 8``, batched) against the old serial rate (one slot: the requests one by one).

    python bench/batching.py [--runs 3] [--threads 2] [--hub]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_cpp
import openai
from agent_process import MESSAGES, NEW_TOKENS, agent_process, streamed_tok_s

from shared.model_files import bundled_model_path

STREAMS = (1, 2, 4, 8)


def raw_tok_s(llm: llama_cpp.Llama) -> float:
    """One stream of raw llama-cpp-python."""
    started = time.perf_counter()
    for _ in llm.create_chat_completion(
        MESSAGES, max_tokens=NEW_TOKENS, temperature=0, stream=True
    ):
        pass
    return NEW_TOKENS / (time.perf_counter() - started)


class Engine:
    """The bare batched loop on llama.cpp's low-level API: the most k streams can get."""

    def __init__(self, llm: llama_cpp.Llama, k_max: int) -> None:
        lib = llama_cpp
        p = lib.llama_context_params.from_buffer_copy(llm.context_params)
        p.n_ctx, p.n_seq_max, p.kv_unified = 2048 * k_max, k_max, False
        self.ctx = lib.llama_init_from_model(llm._model.model, p)
        self.mem = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(512, 0, 1)
        self.tokens = _chat_tokens(llm)
        self.k_max = k_max

    def aggregate_tok_s(self, k: int) -> float:
        """k sequences: read the prompt once per sequence, then decode NEW_TOKENS together."""
        lib, b = llama_cpp, self.batch
        for s in range(self.k_max):
            lib.llama_memory_seq_rm(self.mem, s, -1, -1)
        samplers = []
        for _ in range(k):
            chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            samplers.append(chain)
        started = time.perf_counter()
        last = []
        n = len(self.tokens)
        for s in range(k):
            self._fill([(t, i, s, i == n - 1) for i, t in enumerate(self.tokens)])
            assert lib.llama_decode(self.ctx, b) == 0
            last.append(lib.llama_sampler_sample(samplers[s], self.ctx, n - 1))
        for step in range(NEW_TOKENS - 1):
            self._fill([(last[s], n + step, s, True) for s in range(k)])
            assert lib.llama_decode(self.ctx, b) == 0
            last = [lib.llama_sampler_sample(samplers[s], self.ctx, s) for s in range(k)]
        elapsed = time.perf_counter() - started
        for chain in samplers:
            lib.llama_sampler_free(chain)
        return k * NEW_TOKENS / elapsed

    def _fill(self, rows: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        b.n_tokens = len(rows)
        for i, (tok, pos, seq, logits) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = (
                tok,
                pos,
                1,
                seq,
                logits,
            )


def _chat_tokens(llm: llama_cpp.Llama) -> list[int]:
    from shared.runtimes.gguf import GgufRuntime

    rt = GgufRuntime(llm, path=bundled_model_path(), n_threads=llm.n_threads, n_gpu_layers=0)
    return rt.prepare_chat(MESSAGES).tokens


def agent_aggregate(client: openai.OpenAI, model: str, k: int) -> float:
    """k concurrent streamed requests: all their tokens ÷ the wall time of the k."""
    started = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        rates = list(pool.map(lambda _: streamed_tok_s(client, model), range(k)))
    assert len(rates) == k
    return k * NEW_TOKENS / (time.perf_counter() - started)


async def hub_figures(threads: int, runs: int) -> tuple[float, float]:
    """(batched aggregate at 8, serial rate) tok/s of the hub's GGUF back-end over NATS."""
    from cloud_hub.serving import running_hub
    from cloud_hub.settings import HubModelSpec, HubSettings
    from edge_agent.uplink import Uplink
    from shared.embedded_nats import embedded_nats
    from shared.protocol import ChatTurn, InferParams, InferRequest

    def request(i: int) -> InferRequest:
        return InferRequest(
            id=f"h{i}-{time.monotonic_ns()}",
            device="bench-dev",
            model="smollm2",
            kind="chat",
            messages=[ChatTurn(role="user", content=MESSAGES[0]["content"])],
            params=InferParams(max_tokens=NEW_TOKENS, temperature=0),
        )

    async def aggregate(uplink: Uplink, k: int) -> float:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(uplink.complete(request(i), timeout=600) for i in range(k))
        )
        tokens = sum(r.usage.completion_tokens for r in results)
        return tokens / (time.perf_counter() - started)

    spec = HubModelSpec(name="smollm2", backend="gguf", n_ctx=2048, n_threads=threads)
    out = []
    with embedded_nats() as server:
        uplink = Uplink(server.url, device="bench-dev")
        await uplink.connect()
        assert await uplink.wait_connected(10)
        for slots, k in ((8, 8), (1, 1)):
            settings = HubSettings(nats_url=server.url, models=[spec], concurrency=slots)
            async with running_hub(settings):
                await aggregate(uplink, k)  # warm-up
                out.append(statistics.median([await aggregate(uplink, k) for _ in range(runs)]))
        await uplink.close()
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs per side and k")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--hub", action="store_true", help="also measure the hub over NATS")
    args = parser.parse_args()
    llm = llama_cpp.Llama(
        model_path=str(bundled_model_path()),
        n_ctx=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    engine = Engine(llm, max(STREAMS))
    raw_tok_s(llm)
    raw = statistics.median(raw_tok_s(llm) for _ in range(args.runs))
    print(f"raw llama-cpp-python, 1 stream: {raw:.1f} tok/s (median of {args.runs})", flush=True)
    env = {
        "AGL_PARALLEL": str(max(STREAMS)),
        "AGL_MAX_QUEUE": "64",
        "AGL_REQUEST_TIMEOUT_S": "3600",
    }
    ratios: dict[int, float] = {}
    with agent_process(threads=args.threads, env=env) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        engine.aggregate_tok_s(2), agent_aggregate(client, model, 2)  # warm-up both
        for k in STREAMS:
            eng, agent = [], []
            for _ in range(args.runs):
                eng.append(engine.aggregate_tok_s(k))
                agent.append(agent_aggregate(client, model, k))
            e, a = statistics.median(eng), statistics.median(agent)
            ratios[k] = a / e
            print(
                f"{k} streams: engine limit {e:7.1f} tok/s ({e / raw:.2f}x raw 1-stream)   "
                f"agent {a:7.1f} tok/s ({a / raw:.2f}x raw)   agent/engine {a / e:.3f}",
                flush=True,
            )
    if args.hub:
        batched, serial = asyncio.run(hub_figures(args.threads, args.runs))
        print(
            f"hub over NATS: 8 concurrent requests {batched:.1f} tok/s aggregate; "
            f"serial (1 slot) {serial:.1f} tok/s; batched/serial {batched / serial:.2f}"
        )
    print(f"agg_ratio_4 = {ratios[4]:.3f}")
    print(f"agg_ratio_8 = {ratios[8]:.3f}")


if __name__ == "__main__":
    main()
