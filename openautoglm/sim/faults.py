"""The fault schedule: applies each ``[[faults]]`` entry at its time, heals windowed ones, marks all.

    injector = FaultInjector(scenario, topo, ledger, collector=proxy)
    await injector.run()          # returns after the last fault was applied (and healed)

Faults and what they touch:
    kill_worker     SIGKILL a ``hubctl serve`` worker (or all of them)
    add_worker      start one more worker
    restart_nats    SIGKILL a hub-side nats-server, start it again after ``down_s``
    partition_site  the proxy between a site's leaf node and the hub side blackholes, drops or delays
    slow_hub        the proxy between the workers and NATS delays every byte by ``delay_ms``
    collector_down  the proxy in front of the OTLP collector blackholes or drops
    clock_jump      the wall clock (``time.time``) of the devices' process steps by ``jump_s``
    plugin_rollout  push a fail-closed plugin and roll it out in waves (``rollout_fault``)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from openautoglm.sim.errors import TopologyError
from openautoglm.sim.proxy import FaultProxy
from openautoglm.sim.rollout_fault import bad_plugin_rollout
from openautoglm.sim.scenario import Fault, Scenario
from openautoglm.sim.topology import Topology
from shared.fleet_report.ledger import FaultMark, Ledger

log = logging.getLogger("openautoglm.sim.faults")

__all__ = ["FaultInjector", "WallClock"]


class WallClock:
    """Shifts ``time.time``/``time.time_ns`` of this process; ``restore()`` undoes it.

    Only wall-clock readers see the jump; ``time.monotonic`` (timeouts, the breaker) does not,
    which is exactly what a device whose NTP steps its clock experiences.
    """

    def __init__(self) -> None:
        self.offset_s = 0.0
        self._time: Callable[[], float] = time.time
        self._time_ns: Callable[[], int] = time.time_ns

    def jump(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (cumulative)."""
        self.offset_s += seconds
        real, real_ns, offset = self._time, self._time_ns, self.offset_s
        time.time = lambda: real() + offset
        time.time_ns = lambda: real_ns() + int(offset * 1e9)

    def restore(self) -> None:
        """Put the real clock back."""
        time.time, time.time_ns = self._time, self._time_ns
        self.offset_s = 0.0


class FaultInjector:
    """Applies a scenario's fault schedule to a running topology (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        topo: Topology,
        ledger: Ledger,
        *,
        collector: FaultProxy | None = None,
    ) -> None:
        self.scenario = scenario
        self.topo = topo
        self.ledger = ledger
        self.collector = collector
        self.clock = WallClock()
        self._healers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Apply every fault at its time; return once all are applied and healed."""
        for fault in sorted(self.scenario.faults, key=lambda f: f.at_s):
            delay = fault.at_s - self.ledger.now()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._apply(fault)
        if self._healers:
            await asyncio.gather(*self._healers)

    async def _apply(self, fault: Fault) -> None:
        start = self.ledger.now()
        detail = ""
        kind = fault.kind
        if kind == "kill_worker":
            killed = self.topo.kill_worker(fault.worker)
            detail = f"killed worker(s) {killed}; {self.topo.live_workers()} left"
        elif kind == "add_worker":
            index = await self.topo.add_worker()
            detail = f"worker {index} serving from {self.ledger.now():.1f} s"
            self.ledger.faults.append(FaultMark(kind, start, self.ledger.now(), detail))
            return
        elif kind == "restart_nats":
            await self.topo.restart_node(fault.node, down_s=fault.down_s)
            detail = f"hub-side nats-server {fault.node} down {fault.down_s:g} s"
            self.ledger.faults.append(FaultMark(kind, start, self.ledger.now(), detail))
            return
        elif kind == "plugin_rollout":
            try:
                outcome = await bad_plugin_rollout(self.topo, fault, self.ledger)
            except (TopologyError, TimeoutError, ValueError, IndexError) as exc:
                outcome = {"error": f"{type(exc).__name__}: {exc}"}
            self.ledger.rollouts.append(outcome)
            detail = f"{outcome.get('status', 'failed')} in wave {outcome.get('wave')}"
            self.ledger.faults.append(FaultMark(kind, start, self.ledger.now(), detail))
            return
        elif kind == "clock_jump":
            self.clock.jump(fault.jump_s)
            detail = f"wall clock {fault.jump_s:+g} s"
        else:
            proxies = self._proxies(fault)
            for proxy in proxies:
                if kind == "slow_hub":
                    proxy.set_mode("delay", delay_s=fault.delay_ms / 1000)
                else:
                    proxy.set_mode(fault.mode, delay_s=fault.delay_ms / 1000)
            detail = f"{fault.site or ''} {fault.mode if kind != 'slow_hub' else ''}".strip()
            if kind == "slow_hub":
                detail = f"+{fault.delay_ms:g} ms each way"
            self._healers.append(asyncio.create_task(self._heal_later(fault, proxies)))
        log.info("fault %s at %.1f s: %s", kind, start, detail)
        self.ledger.faults.append(FaultMark(kind, start, fault.until_s, detail))

    def _proxies(self, fault: Fault) -> list[FaultProxy]:
        if fault.kind == "partition_site":
            assert fault.site is not None
            return self.topo.site_proxies[fault.site]
        if fault.kind == "slow_hub":
            return self.topo.hub_proxies
        assert self.collector is not None  # checked by the scenario
        return [self.collector]

    async def _heal_later(self, fault: Fault, proxies: list[FaultProxy]) -> None:
        assert fault.duration_s is not None
        await asyncio.sleep(fault.duration_s)
        base = self.scenario.hub.latency_ms / 1000 if fault.kind == "slow_hub" else 0.0
        for proxy in proxies:
            proxy.set_mode("delay" if base else "pass", delay_s=base)
        log.info("fault %s healed at %.1f s", fault.kind, self.ledger.now())

    async def heal_all(self) -> None:
        """Undo what is still in effect (the run ends): clock back, proxies passing."""
        self.clock.restore()
        for task in self._healers:
            task.cancel()
        for proxy in [
            *self.topo.hub_proxies,
            *(p for ps in self.topo.site_proxies.values() for p in ps),
        ]:
            proxy.set_mode("pass")
