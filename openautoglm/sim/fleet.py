"""The simulated devices of a run: their settings, their start, and the traffic they send.

devices = await start_devices(scenario, topo, otlp, rng, ledger, pool)
await drive_traffic(scenario, devices, ledger, injector, rng)   # fills the ledger
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from edge_agent.router.policy import RouterConfig
from edge_agent.settings import EdgeSettings, load_settings
from openautoglm.sim.batch_lines import (
    SubmittedBatch,
    collect_batches,
    pick_submitters,
    submit_batch,
)
from openautoglm.sim.device import SharedPool, SimDevice
from openautoglm.sim.faults import FaultInjector
from openautoglm.sim.requests import send_request
from openautoglm.sim.runtime import LocalModelSpec
from openautoglm.sim.scenario import Scenario
from openautoglm.sim.topology import Topology
from openautoglm.sim.traffic import arrival_times, intended_tier, make_request
from shared.fleet_report.ledger import Ledger, LedgerEntry
from shared.leaf import HUB_DOMAIN

log = logging.getLogger("openautoglm.sim")

__all__ = ["START_BATCH", "device_settings", "drive_traffic", "start_devices"]

#: Devices started (and stopped) at once: each runs its lifespan (uplink connect, schedulers).
START_BATCH = 25


def device_settings(
    scenario: Scenario,
    *,
    name: str,
    nats_url: str,
    otlp: str | None,
    site: str | None = None,
    desired: dict[str, Any] | None = None,
) -> EdgeSettings:
    """The real edge settings of one device: the scenario's ``[edge]`` plus what the harness wires
    (``site``: the Batch API keeps lines in that leaf's JetStream domain; ``desired``: the
    desired-state watcher of a plugin_rollout fault)."""
    edge: dict[str, Any] = {k: v for k, v in scenario.edge.items() if k not in {"hub", "telemetry"}}
    if site is not None and scenario.batches.device_share:
        edge["batches"] = {**edge.get("batches", {}), "leaf_domain": site, "hub_domain": "hub"}
    if desired is not None:
        edge["desired"] = {**edge.get("desired", {}), **desired}
    hub = {**scenario.edge.get("hub", {}), "nats_url": nats_url}
    if scenario.hub.leaf_nodes:  # on a site's leaf: the hub's JetStream (desired state) by domain
        hub.setdefault("jetstream_domain", HUB_DOMAIN)
    telemetry: dict[str, Any] = {**scenario.edge.get("telemetry", {})}
    if otlp is not None:
        telemetry.update(endpoint=otlp, traces_sample_ratio=1.0, export_timeout_s=1.0)
    edge.setdefault("router", {}).setdefault("default_cloud_model", scenario.hub.model)
    return load_settings(
        None,
        device_id=name,
        model_id=scenario.traffic.model,
        n_ctx=scenario.local.n_ctx,
        request_timeout_s=edge.pop("request_timeout_s", scenario.traffic.deadline_s),
        hub=hub,
        telemetry=telemetry,
        **edge,
    )


async def start_devices(
    scenario: Scenario,
    topo: Topology,
    otlp: str | None,
    rng: random.Random,
    ledger: Ledger,
    pool: SharedPool,
    desired: Callable[[str], dict[str, Any]] | None = None,
) -> list[SimDevice]:
    spec = LocalModelSpec(**scenario.local.model_dump())

    def on_breaker(device: str, before: str, after: str) -> None:
        ledger.breaker_events.append((ledger.now(), device, before, after))

    plan = [
        (f"{site.name}-{i:03d}", site.name) for site in scenario.sites for i in range(site.devices)
    ]
    devices: list[SimDevice] = []
    for i in range(0, len(plan), START_BATCH):
        batch = plan[i : i + START_BATCH]
        devices += await asyncio.gather(
            *(
                SimDevice.start(
                    name=name,
                    site=site,
                    settings=device_settings(
                        scenario,
                        name=name,
                        nats_url=topo.device_url(site),
                        otlp=otlp,
                        site=site,
                        desired=desired(name) if desired else None,
                    ),
                    spec=spec,
                    rng=random.Random(rng.random()),
                    on_breaker=on_breaker,
                    pool=pool,
                )
                for name, site in batch
            )
        )
    up = await asyncio.gather(*(d.wait_connected(15) for d in devices))
    down = [d.name for d, ok in zip(devices, up, strict=True) if not ok]
    if down:
        log.warning("%d devices did not connect to NATS: %s", len(down), ", ".join(down[:5]))
    return devices


async def drive_traffic(
    scenario: Scenario,
    devices: list[SimDevice],
    ledger: Ledger,
    injector: FaultInjector,
    rng: random.Random,
) -> None:
    arrivals = scenario.arrivals
    router = RouterConfig.model_validate(
        {"default_cloud_model": scenario.hub.model, **scenario.edge.get("router", {})}
    )
    pending: set[asyncio.Task[None]] = set()
    ledger.t0 = time.monotonic()

    async def device_loop(device: SimDevice, times: list[float], drng: random.Random) -> None:
        for at in times:
            delay = at - ledger.now()
            if delay > 0:
                await asyncio.sleep(delay)
            req = make_request(drng, scenario)
            now = ledger.now()
            entry: LedgerEntry = ledger.open(
                device=device.name,
                site=device.site,
                prompt_class=req.prompt_class,
                prompt_tokens=req.prompt_tokens,
                stream=req.stream,
                intended_tier=intended_tier(
                    req.prompt_tokens, scenario.traffic.model, router, scenario.local.n_ctx
                ),
                sent_at=now,
                deadline_at=now + scenario.traffic.deadline_s,
            )
            task = asyncio.create_task(send_request(device, req, entry, ledger, scenario))
            pending.add(task)
            task.add_done_callback(pending.discard)

    loops = []
    for device in devices:
        drng = random.Random(rng.random())
        times = arrival_times(
            drng,
            rate=arrivals.rate_per_device,
            amplitude=arrivals.diurnal_amplitude,
            period_s=arrivals.diurnal_period_s,
            duration_s=scenario.duration_s,
        )
        loops.append(asyncio.create_task(device_loop(device, times, drng)))
    batches: list[SubmittedBatch] = []

    async def batch_loop(device: SimDevice) -> None:
        for number, at in enumerate(sorted(scenario.batches.submit_at_s)):
            await asyncio.sleep(max(0.0, at - ledger.now()))
            batches.append(await submit_batch(device, scenario, ledger, number))

    loops += [asyncio.create_task(batch_loop(d)) for d in pick_submitters(scenario, devices, rng)]
    faults = asyncio.create_task(injector.run())
    try:
        await asyncio.gather(*loops)
        if pending:
            await asyncio.wait(set(pending), timeout=2 * scenario.traffic.deadline_s + 5)
        await faults
        await collect_batches(batches, scenario, ledger)
    finally:
        faults.cancel()
        for task in [*loops, *pending]:
            task.cancel()
        await injector.heal_all()
