"""Deferred batch drain after reconnect ÷ bare JetStream publish+consume of the same messages.

    python bench/batch_drain.py [--lines 2000] [--runs 3]

A real hub-side nats-server, a leaf node behind a link we cut, and a hub serving the ECHO
stand-in. With the link down, N lines are queued in the device's stream (as the agent does);
the link comes back and the time until the last result is in the device's results stream is
measured (link restored → every line answered; target ≤ 5 s). The drain rate counts from the
first answer after the reconnect to the last (the leaf's own reconnect interval, 1 s, is in the
restore figure, not in the rate). The peer: N messages published to and consumed from one
JetStream stream with nats-py on the same machine. Medians of ``--runs``; the ratio of the
rates (target ≥ 0.5) is on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.batches.store import BatchStore
from shared.batch_wire import (
    AGENT_CONSUMER,
    BatchHello,
    BatchLine,
    encode_wire,
    hello_subject,
    results_stream,
)
from shared.embedded_nats import embedded_nats
from shared.protocol import InferRequest
from tests.batches.site import CLOUD_MODEL, edge_site


def _line(batch: str, i: int) -> BatchLine:
    req = InferRequest(
        id=f"r{i}", device="bench", model=CLOUD_MODEL, kind="completion", prompt=f"line {i}"
    )
    return BatchLine(batch_id=batch, index=i, custom_id=f"c{i}", request=req)


async def _deferred(n: int, tmp: Path, run: int) -> tuple[float, float, int]:
    (tmp / f"run{run}").mkdir()
    with edge_site(tmp / f"run{run}") as site:
        nc = await nats.connect(site.leaf.url)
        store = BatchStore(nc.jetstream(domain=site.domain), device="bench")
        await store.setup()
        await nc.publish(hello_subject("bench"), encode_wire(BatchHello(domain=site.domain)))
        await asyncio.sleep(1.0)  # the hub starts pulling (and creates the results stream)
        site.link.down()
        for i in range(n):
            await store.publish_line(_line("b1", i), local=False)
        await asyncio.sleep(1.0)
        hub_js = nc.jetstream(domain="hub")
        site.link.up()
        start = time.perf_counter()
        got = 0
        first = 0.0
        sub = None
        while got < n:
            try:
                if sub is None:
                    sub = await hub_js.pull_subscribe_bind(
                        AGENT_CONSUMER, stream=results_stream("bench")
                    )
                msgs = await sub.fetch(256, timeout=1.0)
            except Exception:
                await asyncio.sleep(0.05)
                continue
            if not got and msgs:
                first = time.perf_counter()
            for m in msgs:
                await m.ack()
            got += len(msgs)
        end = time.perf_counter()
        await asyncio.sleep(0.5)  # the last results are counted just after they are published
        twice = (site.hub.batches.ran - n) if site.hub.batches else -1
        await nc.close()
        return end - start, end - first, twice


async def _bare(n: int) -> float:
    with embedded_nats() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="BARE", subjects=["bare.>"]))
        payload = encode_wire(_line("b1", 0))
        start = time.perf_counter()
        for i in range(n):
            await js.publish("bare.x", payload, headers={"Nats-Msg-Id": str(i)})
        sub = await js.pull_subscribe("bare.x", durable="c")
        got = 0
        while got < n:
            msgs = await sub.fetch(256, timeout=2.0)
            for m in msgs:
                await m.ack()
            got += len(msgs)
        elapsed = time.perf_counter() - start
        await nc.close()
        return elapsed


async def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agl-batch-drain-"))
    restores: list[float] = []
    drains: list[float] = []
    bares: list[float] = []
    twice = 0
    for run in range(a.runs):
        t, d, dup = await _deferred(a.lines, tmp, run)
        restores.append(t)
        drains.append(d)
        twice += dup
        bares.append(await _bare(a.lines))
        print(
            f"run {run}: link restored -> all {a.lines} answered {t:.2f} s "
            f"(first answer -> last {d:.2f} s); bare publish+consume {bares[-1]:.2f} s"
        )
    restore = statistics.median(restores)
    drain, bare = statistics.median(drains), statistics.median(bares)
    print(f"lines processed twice: {twice}")
    print(f"link restored -> all {a.lines} answered: {restore:.2f} s (target <= 5 s)")
    print(
        f"deferred drain {a.lines / drain:.0f} lines/s; bare JetStream {a.lines / bare:.0f} msgs/s"
    )
    print(f"drain / bare ratio: {bare / drain:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
