"""Run a scenario: start the fleet, send the traffic, apply the faults, fill the ledger.

    result = await run_scenario(load_scenario("smoke"))
    result.ledger, result.rss_per_device_mb, result.violations

The devices, the router, the uplink, the breaker and the hub workers are all real; only each
device's model is simulated (``openautoglm.sim.runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_agent.settings import HubLink
from openautoglm.sim.collector import CollectorSink
from openautoglm.sim.device import SharedPool, SimDevice
from openautoglm.sim.errors import TopologyError
from openautoglm.sim.faults import FaultInjector
from openautoglm.sim.fleet import START_BATCH, drive_traffic, start_devices
from openautoglm.sim.invariants import Violation, check_all
from openautoglm.sim.proxy import FaultProxy
from openautoglm.sim.rollout_fault import desired_settings
from openautoglm.sim.scenario import Scenario
from openautoglm.sim.topology import Topology
from shared.fleet_report.ledger import Ledger

log = logging.getLogger("openautoglm.sim")

__all__ = ["RunResult", "run_scenario", "run_scenario_sync"]

#: Threads of the pool all devices share for prompts and plugin calls (see ``SharedPool``).
_POOL_THREADS = 4


@dataclass
class RunResult:
    """What a run produced: the ledger, memory figures and the invariant verdicts."""

    scenario: Scenario
    ledger: Ledger
    rss_per_device_mb: float
    rss_base_mb: float
    wall_s: float
    violations: list[Violation] = field(default_factory=list)
    collector_posts: int = 0
    registry: dict[str, Any] = field(default_factory=dict)
    """The hub registry's summary of this fleet's devices after the traffic (as ``hubctl stats
    --json`` counts them)."""
    loop_lag_ms: list[float] = field(default_factory=list)
    """How late a 100 ms timer fired on the devices' event loop, sampled through the traffic:
    a large lag means the simulator itself, not the fleet, made requests slow."""

    @property
    def passed(self) -> bool:
        """No invariant broke."""
        return not self.violations


def rss_mb() -> float:
    """This process's resident set size in MB (Linux ``/proc``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_scenario_sync(scenario: Scenario, *, hub_report: Path | None = None) -> RunResult:
    """:func:`run_scenario` on a fresh event loop (uvloop when installed: it comes with uvicorn).

    SIGTERM stops the run like Ctrl-C: workers and nats-servers are stopped on the way out.
    """
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        factory = None
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run_scenario(scenario, hub_report=hub_report))
    finally:
        signal.signal(signal.SIGTERM, previous)


async def run_scenario(
    scenario: Scenario, *, workdir: Path | None = None, hub_report: Path | None = None
) -> RunResult:
    """Run ``scenario`` end to end and check its invariants (module docstring).

    ``hub_report``: also write ``hubctl report`` (the hub registry's view of this fleet) there.
    """
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agl-sim-")))
        return await _run(scenario, workdir, started, hub_report)
    raise AssertionError("unreachable")  # pragma: no cover


async def _run(
    scenario: Scenario, workdir: Path, started: float, hub_report: Path | None
) -> RunResult:
    rollout = any(f.kind == "plugin_rollout" for f in scenario.faults)
    rng = random.Random(scenario.seed)
    topo = Topology(
        scenario.hub,
        sites=[s.name for s in scenario.sites],
        workdir=workdir,
        # A site's JetStream domain: deferred lines wait there; the desired-state watcher
        # reaches the hub's domain ($JS.hub.API) across it.
        leaf_jetstream=scenario.batches.device_share > 0 or rollout,
    )
    sink: CollectorSink | None = None
    collector: FaultProxy | None = None
    devices: list[SimDevice] = []
    ledger = Ledger()
    pool = SharedPool(_POOL_THREADS, thread_name_prefix="sim-device")
    try:
        await topo.start()
        otlp = None
        if scenario.telemetry:
            sink = CollectorSink()
            await sink.start()
            collector = FaultProxy("127.0.0.1", sink.port, name="collector")
            await collector.start()
            otlp = f"http://127.0.0.1:{collector.port}"
        base = rss_mb()
        desired = desired_settings(workdir) if rollout else None
        devices = await start_devices(scenario, topo, otlp, rng, ledger, pool, desired)
        per_device = (rss_mb() - base) / max(1, len(devices))
        log.info("%d devices up; %.2f MB each", len(devices), per_device)
        # Hundreds of agents' long-lived objects share this process's heap (a real device has
        # its own): without a freeze every full collection walks them all, a pause of 100+ ms at
        # 200 devices that would show as the fleet's latency. Frozen, they are never collected.
        gc.collect()
        gc.freeze()
        injector = FaultInjector(scenario, topo, ledger, collector=collector)
        lags: list[float] = []
        probe = asyncio.create_task(_loop_lag(lags))
        try:
            await drive_traffic(scenario, devices, ledger, injector, rng)
        finally:
            probe.cancel()
        per_device = max(per_device, (rss_mb() - base) / max(1, len(devices)))
        # The registry first: the hub's report then reads the same, complete, registry.
        registry = await read_registry(topo, scenario, [d.name for d in devices])
        await _hub_report(topo, hub_report)
        violations = check_all(scenario, ledger, registry=registry)
        return RunResult(
            scenario=scenario,
            ledger=ledger,
            rss_per_device_mb=per_device,
            rss_base_mb=base,
            wall_s=time.monotonic() - started,
            violations=violations,
            collector_posts=0 if sink is None else sink.posts,
            loop_lag_ms=lags,
            registry=registry if isinstance(registry, dict) else {},
        )
    finally:
        gc.unfreeze()
        for i in range(0, len(devices), START_BATCH):
            await asyncio.gather(*(d.stop() for d in devices[i : i + START_BATCH]))
        if collector is not None:
            await collector.close()
        if sink is not None:
            await sink.close()
        await topo.close()
        pool.close()


#: The devices' heartbeat period when the scenario does not set ``[edge.hub] heartbeat_s``.
EDGE_HEARTBEAT_S: float = HubLink.model_fields["heartbeat_s"].default


class HubStats(Protocol):
    """What reads the hub registry's summary of some devices (the topology)."""

    async def registry_summary(self, devices: Collection[str]) -> dict[str, Any]: ...


async def read_registry(
    topo: HubStats, scenario: Scenario, devices: Collection[str]
) -> dict[str, Any] | str:
    """The registry's summary of ``devices`` (``hubctl stats``' counts), or why it could not be read.

    Read again (for up to two heartbeat periods) until every device is online: a beat in flight
    when the traffic ended, or one lost while the hub opened its registry, is sent again on the
    next period, so a device missing for longer than that is a real violation.
    """
    beat_s = float(scenario.edge.get("hub", {}).get("heartbeat_s", EDGE_HEARTBEAT_S))
    deadline = time.monotonic() + 2 * beat_s
    while True:
        try:
            summary: dict[str, Any] | str = await topo.registry_summary(devices)
        except (TopologyError, TimeoutError) as exc:
            summary = str(exc)
        online = summary.get("devices", {}).get("online", 0) if isinstance(summary, dict) else 0
        if online >= scenario.device_count or time.monotonic() >= deadline:
            return summary
        await asyncio.sleep(0.5)


async def _hub_report(topo: Topology, out: Path | None) -> None:
    if out is None:
        return
    try:
        await topo.hub_report(out)
    except (TopologyError, TimeoutError) as exc:
        log.warning("the hub's own report could not be written: %s", exc)


async def _loop_lag(out: list[float], period_s: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(period_s)
        out.append((loop.time() - before - period_s) * 1000)
