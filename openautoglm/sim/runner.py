"""Run a scenario: start the fleet, send the traffic, apply the faults, fill the ledger.

    result = await run_scenario(load_scenario("smoke"))
    result.ledger, result.rss_per_device_mb, result.violations

The devices, the router, the uplink, the breaker and the hub workers are all real; only each
device's model is simulated (``openautoglm.sim.runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.router.policy import RouterConfig
from edge_agent.settings import EdgeSettings, load_settings
from openautoglm.sim.collector import CollectorSink
from openautoglm.sim.device import SharedPool, SimDevice
from openautoglm.sim.errors import TopologyError
from openautoglm.sim.faults import FaultInjector
from openautoglm.sim.invariants import Violation, check_all
from openautoglm.sim.proxy import FaultProxy
from openautoglm.sim.requests import send_request
from openautoglm.sim.runtime import LocalModelSpec
from openautoglm.sim.scenario import Scenario
from openautoglm.sim.topology import Topology
from openautoglm.sim.traffic import arrival_times, intended_tier, make_request
from shared.fleet_report.ledger import Ledger, LedgerEntry

log = logging.getLogger("openautoglm.sim")

__all__ = ["RunResult", "run_scenario", "run_scenario_sync"]

#: Threads of the pool all devices share for prompts and plugin calls (see ``SharedPool``).
_POOL_THREADS = 4
#: Devices started at once (each runs its lifespan: uplink connect, scheduler start).
_START_BATCH = 25


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
    """``hubctl stats --json`` after the traffic: the hub registry's view of the fleet."""
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


def device_settings(
    scenario: Scenario, *, name: str, nats_url: str, otlp: str | None
) -> EdgeSettings:
    """The real edge settings of one device: the scenario's ``[edge]`` plus what the harness wires."""
    edge: dict[str, Any] = {k: v for k, v in scenario.edge.items() if k not in {"hub", "telemetry"}}
    hub = {**scenario.edge.get("hub", {}), "nats_url": nats_url}
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
    FaultInjector.check_supported(scenario)
    rng = random.Random(scenario.seed)
    topo = Topology(scenario.hub, sites=[s.name for s in scenario.sites], workdir=workdir)
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
        devices = await _start_devices(scenario, topo, otlp, rng, ledger, pool)
        per_device = (rss_mb() - base) / max(1, len(devices))
        log.info("%d devices up; %.2f MB each", len(devices), per_device)
        injector = FaultInjector(scenario, topo, ledger, collector=collector)
        lags: list[float] = []
        probe = asyncio.create_task(_loop_lag(lags))
        try:
            await _traffic(scenario, devices, ledger, injector, rng)
        finally:
            probe.cancel()
        per_device = max(per_device, (rss_mb() - base) / max(1, len(devices)))
        registry: dict[str, Any] | str
        try:
            registry = await topo.registry_summary()
        except (TopologyError, TimeoutError) as exc:
            registry = str(exc)
        violations = check_all(scenario, ledger, registry=registry)
        if hub_report is not None:
            try:
                await topo.hub_report(hub_report)
            except (TopologyError, TimeoutError) as exc:
                log.warning("the hub's own report could not be written: %s", exc)
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
        for i in range(0, len(devices), _START_BATCH):
            await asyncio.gather(*(d.stop() for d in devices[i : i + _START_BATCH]))
        if collector is not None:
            await collector.close()
        if sink is not None:
            await sink.close()
        await topo.close()
        pool.close()


async def _loop_lag(out: list[float], period_s: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(period_s)
        out.append((loop.time() - before - period_s) * 1000)


async def _start_devices(
    scenario: Scenario,
    topo: Topology,
    otlp: str | None,
    rng: random.Random,
    ledger: Ledger,
    pool: SharedPool,
) -> list[SimDevice]:
    spec = LocalModelSpec(**scenario.local.model_dump())

    def on_breaker(device: str, before: str, after: str) -> None:
        ledger.breaker_events.append((ledger.now(), device, before, after))

    plan = [
        (f"{site.name}-{i:03d}", site.name) for site in scenario.sites for i in range(site.devices)
    ]
    devices: list[SimDevice] = []
    for i in range(0, len(plan), _START_BATCH):
        batch = plan[i : i + _START_BATCH]
        devices += await asyncio.gather(
            *(
                SimDevice.start(
                    name=name,
                    site=site,
                    settings=device_settings(
                        scenario, name=name, nats_url=topo.device_url(site), otlp=otlp
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


async def _traffic(
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
    faults = asyncio.create_task(injector.run())
    try:
        await asyncio.gather(*loops)
        if pending:
            await asyncio.wait(set(pending), timeout=2 * scenario.traffic.deadline_s + 5)
        await faults
    finally:
        faults.cancel()
        for task in [*loops, *pending]:
            task.cancel()
        await injector.heal_all()
