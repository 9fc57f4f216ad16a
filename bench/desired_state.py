"""Desired state: object-store throughput for the bundled model, and fleet convergence time.

    python bench/desired_state.py [--runs 3] [--devices 50]

1. Artifacts: the bundled 98 MB GGUF is signed and pushed (``cloud_hub.control.artifacts``,
   512 KiB chunks) and fetched by the device cache (chunk-by-chunk direct gets, resumable,
   sha256 + signature checked), against nats-py's own ``ObjectStore.put``/``get`` of the same
   file on the same server. MB/s, medians of ``--runs``.
2. Convergence: ``--devices`` SIMULATED devices (``openautoglm.sim``: the real edge app, uplink and
   desired-state watcher, a simulated model) on one nats-server; a device-layer policy is stored
   for every device (``hubctl policy set`` code path) and the time until every device runs the
   new router policy is measured. The peer: one raw KV put seen by as many plain nats-py KV
   watchers (the fan-out floor).
The last line gives ours ÷ raw for upload, download (throughput: higher is better) and
convergence (time: lower is better).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.api import KeyValueConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud_hub.control.artifacts import push_artifact, signing_key
from cloud_hub.control.policy import materialize_all, open_config, set_layer
from edge_agent.control.artifact_cache import ArtifactCache
from edge_agent.settings import load_settings
from openautoglm.sim.device import SimDevice
from openautoglm.sim.runtime import LocalModelSpec
from shared.desired import layer_key
from shared.embedded_nats import embedded_nats
from shared.model_files import bundled_model_path

MB = 1e6


async def artifacts_once(url: str, tmp: Path, run: int) -> dict[str, float]:
    model = bundled_model_path()
    size = model.stat().st_size
    nc = await nats.connect(url)
    js = nc.jetstream()
    signer = signing_key(tmp / "auth")
    t0 = time.perf_counter()
    row = await push_artifact(js, kind="model", path=model, signer=signer, name=f"bench-{run}")
    up = size / (time.perf_counter() - t0) / MB
    cache = ArtifactCache(tmp / f"cache-{run}", max_bytes=1 << 31, trusted=[signer.public])
    t0 = time.perf_counter()
    await cache.fetch(js, kind="model", sha256=row.sha256)
    down = size / (time.perf_counter() - t0) / MB
    raw = await js.create_object_store("bench_raw")
    with model.open("rb") as f:
        t0 = time.perf_counter()
        await raw.put(f"m{run}", f)
        raw_up = size / (time.perf_counter() - t0) / MB
    t0 = time.perf_counter()
    got = await raw.get(f"m{run}")
    raw_down = size / (time.perf_counter() - t0) / MB
    assert len(got.data or b"") == size
    await js.delete_object_store("bench_raw")
    await js.delete_object_store("agl_models")
    await nc.close()
    return {"up": up, "down": down, "raw_up": raw_up, "raw_down": raw_down}


async def raw_fanout(url: str, n: int) -> float:
    """One KV put seen by ``n`` plain watchers (each on its own connection)."""
    conns: list[Client] = [await nats.connect(url) for _ in range(n + 1)]
    kv = await conns[0].jetstream().create_key_value(KeyValueConfig(bucket="bench_kv", direct=True))
    seen = [asyncio.Event() for _ in range(n)]
    watchers, tasks = [], []
    for i, nc in enumerate(conns[1:]):
        w = await (await nc.jetstream().key_value("bench_kv")).watch(f"k{i}", include_history=False)
        watchers.append(w)

        async def wait(w=w, ev=seen[i]) -> None:  # type: ignore[no-untyped-def]
            async for entry in w:
                if entry is not None and entry.value == b"v2":
                    ev.set()
                    return

        tasks.append(asyncio.create_task(wait()))
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    for i in range(n):
        await kv.put(f"k{i}", b"v2")
    await asyncio.gather(*(e.wait() for e in seen))
    took = time.perf_counter() - t0
    for w in watchers:
        await w.stop()
    await conns[0].jetstream().delete_key_value("bench_kv")
    for nc in conns:
        await nc.close()
    return took


async def converge_once(url: str, devices: list[SimDevice], slo: float) -> float:
    nc = await nats.connect(url)
    kv = await open_config(nc)
    names = [d.name for d in devices]
    t0 = time.perf_counter()
    for name in names:
        await set_layer(kv, layer_key(device=name), {"router": {"load_slo_s": slo}})
    await materialize_all(nc, kv, extra_devices=names)
    while any(d.state.settings.router.load_slo_s != slo for d in devices):
        await asyncio.sleep(0.005)
    took = time.perf_counter() - t0
    await nc.close()
    return took


async def start_devices(url: str, n: int, tmp: Path) -> list[SimDevice]:
    spec = LocalModelSpec(ttft_s=0.01, tokens_per_s=200, logprob_mean=-0.5, logprob_sd=0.2,
                          difficulty_sd=0.2, n_ctx=512)  # fmt: skip
    out = []
    for i in range(n):
        name = f"sim-{i:03d}"
        settings = load_settings(
            None, device_id=name, hub={"nats_url": url, "heartbeat_s": 30},
            desired={"cache_dir": str(tmp / name), "reconcile_s": 30},
        )  # fmt: skip
        out.append(await SimDevice.start(name=name, site="bench", settings=settings, spec=spec,
                                         rng=random.Random(i), on_breaker=lambda *a: None))  # fmt: skip
    for d in out:
        await d.wait_connected(30)
    return out


async def main(runs: int, n: int) -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, embedded_nats() as server:
        figures = [await artifacts_once(server.url, Path(tmp), r) for r in range(runs)]
        med = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        print(f"object store, bundled model ({bundled_model_path().stat().st_size / MB:.1f} MB):")
        print(f"  upload   ours {med['up']:.1f} MB/s   nats-py put {med['raw_up']:.1f} MB/s")
        print(f"  download ours {med['down']:.1f} MB/s   nats-py get {med['raw_down']:.1f} MB/s")
        hub = await nats.connect(server.url)
        await open_config(hub)  # `hubctl serve` or the first `policy set` creates the bucket
        await hub.close()
        devices = await start_devices(server.url, n, Path(tmp))
        await asyncio.sleep(1.0)  # every watch is up
        ours = [await converge_once(server.url, devices, 10.0 + r) for r in range(runs)]
        raw = [await raw_fanout(server.url, n) for _ in range(runs)]
        for d in devices:
            await d.stop()
    conv, floor = statistics.median(ours), statistics.median(raw)
    print(f"{n} simulated devices converge on a policy change: {conv * 1000:.0f} ms "
          f"(raw KV put + watch fan-out to {n}: {floor * 1000:.0f} ms)")  # fmt: skip
    print(
        f"ratio ours/raw: upload {med['up'] / med['raw_up']:.2f}, download "
        f"{med['down'] / med['raw_down']:.2f}, convergence time {conv / floor:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.devices))
