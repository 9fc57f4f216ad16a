"""Interactive latency while an ``edge`` batch uses the device's idle capacity ÷ without a batch.

    python bench/batch_idle.py [--requests 8] [--lines 60] [--runs 3]

A real hub-side nats-server, leaf node and hub (ECHO stand-in), and ``edge-agent run`` with the
bundled local model. Each run measures ``--requests`` interactive chat requests one after the
other (local tier, 32 tokens, a short pause between them, as a user would), first with nothing
else to do, then again while an ``edge`` batch of ``--lines`` lines (16 tokens each) waits on
the device: its lines run only when no interactive request waits or runs. p50 latency of each
phase, medians over ``--runs``; the ratio (target ≤ 1.2) is on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.batches.site import agent_process, edge_site, jsonl
from tests.fixtures.names import MODEL

PAUSE_S = 0.2


def _chat(text: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def _p50(url: str, n: int) -> float:
    took = []
    for i in range(n):
        start = time.perf_counter()
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json=_chat(f"Name a colour, then a fruit. ({i})", 32),
            headers={"x-agl-tier": "edge", "authorization": "Bearer bench"},
            timeout=300,
        )
        r.raise_for_status()
        took.append(time.perf_counter() - start)
        time.sleep(PAUSE_S)
    return statistics.median(took)


def _submit_edge_batch(client: object, lines: int) -> str:
    rows = [
        {
            "custom_id": f"b-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": _chat(f"Write one word about the number {i}.", 16),
        }
        for i in range(lines)
    ]
    f = client.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")  # type: ignore[attr-defined]
    batch = client.batches.create(  # type: ignore[attr-defined]
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"tier": "edge"},
    )
    return str(batch.id)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--lines", type=int, default=60)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agl-batch-idle-"))
    alone, busy = [], []
    with edge_site(tmp) as site, agent_process(site, tmp, device="bench-idle") as agent:
        deadline = time.monotonic() + 120
        while httpx.get(f"{agent.url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the agent's local model did not load in 120 s")
            time.sleep(0.2)
        client = agent.client()
        _p50(agent.url, 2)  # warm-up
        for run in range(a.runs):
            alone.append(_p50(agent.url, a.requests))
            batch_id = _submit_edge_batch(client, a.lines)
            busy.append(_p50(agent.url, a.requests))
            counts = client.batches.retrieve(batch_id).request_counts
            print(
                f"run {run}: p50 alone {alone[-1] * 1000:.0f} ms, with the edge batch "
                f"{busy[-1] * 1000:.0f} ms ({counts.completed}/{counts.total} lines ran meanwhile)",
                flush=True,
            )
            client.batches.cancel(batch_id)  # the next run starts idle again
            while client.batches.retrieve(batch_id).status != "cancelled":
                time.sleep(0.1)
            time.sleep(1.0)  # a line still running finishes
    summary = {"p50_alone_s": statistics.median(alone), "p50_with_batch_s": statistics.median(busy)}
    print(json.dumps(summary))
    print(
        f"interactive p50 with an edge batch / without: {summary['p50_with_batch_s'] / summary['p50_alone_s']:.2f}"
    )


if __name__ == "__main__":
    main()
