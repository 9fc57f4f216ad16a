"""Escalation round trip: ``Uplink.complete`` through the hub vs bare nats-py request/reply.

The hub runs the ECHO back-end, a benchmark stand-in that repeats the prompt (no model), so
the figure is the cost of our protocol, validation and service code on top of NATS. The bare
side is a nats-py responder that answers with pre-built bytes of the same size. Both run in
this process against one real nats-server; runs are interleaved, and the medians of 3 runs
of N requests each are compared. The last line is ``ratio_p50 <ours p50 / bare p50>``.

With ``--auth`` (the default) the server runs in operator mode (``hubctl auth init``): the hub,
the uplink and both bare clients connect with JWT credentials, the bare pair as the same device
(its inbox, a subject of its own) and the hub's user, so both sides pay the same auth.

    python bench/escalation_roundtrip.py [--n 2000] [--runs 3] [--no-auth]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_hub.control.keystore import KeyStore
from cloud_hub.serving import running_hub
from cloud_hub.settings import HubModelSpec, HubSettings
from edge_agent.uplink import Uplink
from shared.embedded_nats import embedded_nats as nats_server
from shared.protocol import ChatTurn, InferRequest, ResultMessage, Usage, encode
from shared.subjects import device_subject, inbox_prefix

MODEL = "echo-bench"
DEVICE = "bench-dev"
#: A subject of the device's own (allowed by its credentials) that no hub listens on.
BARE_SUBJECT = device_subject(DEVICE, "bare")
TEXT = "please summarise the maintenance log of pump seven for the night shift"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    return (
        ordered[len(ordered) // 2] * 1e3,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
    )


def make_request(i: int) -> InferRequest:
    """One escalation with a fresh id."""
    return InferRequest(
        id=f"b{i}",
        device=DEVICE,
        model=MODEL,
        kind="chat",
        messages=[ChatTurn(role="user", content=TEXT)],
    )


async def run_ours(uplink: Uplink, n: int, offset: int) -> list[float]:
    """Latencies of ``n`` sequential ``Uplink.complete`` calls (request built outside the clock)."""
    requests = [make_request(offset + i) for i in range(n)]
    out = []
    for req in requests:
        t0 = time.perf_counter()
        await uplink.complete(req, timeout=5)
        out.append(time.perf_counter() - t0)
    return out


async def run_bare(nc: Client, n: int, payload: bytes) -> list[float]:
    """Latencies of ``n`` sequential bare ``nc.request`` calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await nc.request(BARE_SUBJECT, payload, timeout=5)
        out.append(time.perf_counter() - t0)
    return out


async def main(n: int, runs: int, warmup: int, auth: bool) -> None:
    """Start everything, warm up, measure, print."""
    print("hub back-end: ECHO (a benchmark stand-in that repeats the prompt; no model runs)")
    print(f"auth: {'operator mode, JWT credentials on every connection' if auth else 'none'}")
    with contextlib.ExitStack() as stack:
        store: KeyStore | None = None
        device_creds: Path | None = None
        if auth:
            store = KeyStore(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            store.init(now=int(time.time()))
            device_creds, _ = store.enroll(
                DEVICE, site=None, labels={}, out=store.root, now=int(time.time())
            )
        server = stack.enter_context(nats_server(include=store.server_include if store else None))
        hub_auth: dict[str, Any] = {"user_credentials": str(store.hub_creds)} if store else {}
        dev_auth: dict[str, Any] = {"user_credentials": str(device_creds)} if device_creds else {}
        settings = HubSettings(
            nats_url=server.url,
            models=[HubModelSpec(name=MODEL, backend="echo")],
            credentials=store.hub_creds if store else None,
        )
        payload = encode(make_request(0))
        reply = encode(
            ResultMessage(
                id="b0",
                model=MODEL,
                text=TEXT,
                finish_reason="stop",
                usage=Usage(prompt_tokens=12, completion_tokens=12),
            )
        )
        responder = await nats.connect(server.url, **hub_auth)
        client = await nats.connect(server.url, inbox_prefix=inbox_prefix(DEVICE), **dev_auth)

        async def bare_echo(msg: Msg) -> None:
            await responder.publish(msg.reply, reply)

        await responder.subscribe(BARE_SUBJECT, queue="bare", cb=bare_echo)
        uplink = Uplink(server.url, device=DEVICE, credentials=device_creds)
        await uplink.connect()
        assert await uplink.wait_connected(5), "uplink did not connect"
        async with running_hub(settings):
            print(f"payload {len(payload)} B request, {len(reply)} B reply; N={n}, runs={runs}")
            await run_ours(uplink, warmup, 10**8)
            await run_bare(client, warmup, payload)
            ours, bare = [], []
            for r in range(runs):
                ours.append(percentiles(await run_ours(uplink, n, r * n)))
                bare.append(percentiles(await run_bare(client, n, payload)))
                print(
                    f"run {r + 1}: ours p50 {ours[-1][0]:.3f} ms p99 {ours[-1][1]:.3f} ms | "
                    f"bare p50 {bare[-1][0]:.3f} ms p99 {bare[-1][1]:.3f} ms"
                )
        await uplink.close()
        await responder.close()
        await client.close()
    o50 = statistics.median(p[0] for p in ours)
    o99 = statistics.median(p[1] for p in ours)
    b50 = statistics.median(p[0] for p in bare)
    b99 = statistics.median(p[1] for p in bare)
    print(
        f"median of {runs}: ours p50 {o50:.3f} ms p99 {o99:.3f} ms | "
        f"bare p50 {b50:.3f} ms p99 {b99:.3f} ms | ratio_p99 {o99 / b99:.2f}"
    )
    print(f"ratio_p50 {o50 / b50:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per side")
    parser.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="operator-mode NATS with JWT credentials on both sides (default on)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.n, args.runs, args.warmup, args.auth))
