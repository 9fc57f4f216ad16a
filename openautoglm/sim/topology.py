"""The real processes of a simulated fleet: hub-side nats-server(s), a leaf node per site, workers.

    topo = Topology(scenario.hub, sites=["plant-a", "plant-b"], workdir=tmp)
    await topo.start()
    topo.device_url("plant-a")          # what that site's devices connect to
    topo.kill_worker(0); await topo.add_worker()
    await topo.restart_node(0, down_s=1.0)
    topo.site_proxies["plant-b"]        # FaultProxy objects between the leaf and the hub side
    await topo.close()

The wiring, with a :class:`FaultProxy` on every link the fault schedule can cut or slow:

    devices ─▶ leaf(site) ─▶ proxy(site, node) ─▶ hub-side node(s) ◀─ proxy(hub, node) ◀─ workers

Hub-side servers advertise neither client nor leaf URLs (``no_advertise``), so nobody learns a way
around a proxy. Every server takes only the simulator's own user (a password made per run), so a
stray client of another run cannot join the fleet. Workers are ``hubctl serve`` processes with
the echo back-end (a stand-in).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from cloud_hub.control.fleet import fleet_summary
from cloud_hub.control.registry import Registry, RegistryError
from openautoglm.sim.errors import TopologyError
from openautoglm.sim.nats_nodes import (
    HOST,
    PROBE_DEVICE,
    SIM_USER,
    NatsNode,
    auth_conf,
    die_with_parent,
    hub_conf,
    infer_reaches_hub,
    ping_count,
    start_nodes,
)
from openautoglm.sim.proxy import FaultProxy
from openautoglm.sim.scenario import HubSpec
from shared.embedded_nats import free_port
from shared.leaf import LeafConfig, render_leaf_config
from shared.subjects import inbox_prefix

log = logging.getLogger("openautoglm.sim.topology")

__all__ = ["NatsNode", "Topology", "hubctl_command", "run_hubctl"]


def hubctl_command() -> list[str]:
    """``hubctl`` next to this Python (the venv's bin/), else ``python -m cloud_hub.cli``."""
    beside = Path(sys.executable).parent / "hubctl"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "cloud_hub.cli"]


async def run_hubctl(*args: str, timeout: float, merge_stderr: bool = False) -> str:
    """Run ``hubctl ARGS`` and return its stdout (with its stderr when ``merge_stderr``).

    A non-zero exit is a :class:`TopologyError` quoting the last 500 characters of its stderr
    (of its whole output when merged); no answer within ``timeout`` s is a ``TimeoutError`` that
    names the command.
    """
    name = " ".join(itertools.takewhile(lambda a: not a.startswith("-"), args[:2]))
    proc = await asyncio.create_subprocess_exec(
        *hubctl_command(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise TimeoutError(f"hubctl {name} gave no answer within {timeout:g} s") from None
    text = out.decode()
    if proc.returncode != 0:
        tail = text if merge_stderr else err.decode()
        raise TopologyError(f"hubctl {name} failed ({proc.returncode}): {tail[-500:]}")
    return text


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)


class Topology:
    """Starts, faults and stops the fleet's NATS servers and hub workers (module docstring)."""

    def __init__(
        self, hub: HubSpec, *, sites: list[str], workdir: Path, leaf_jetstream: bool = False
    ) -> None:
        self.hub = hub
        self.leaf_jetstream = leaf_jetstream
        """Leaves get their own JetStream domain (the site's name) for deferred batch lines.
        Without it a device's JetStream calls (desired state, artifacts) reach the hub's."""
        self.sites = sites
        self.workdir = workdir
        self.nodes: list[NatsNode] = []
        self.hub_proxies: list[FaultProxy] = []
        self.site_proxies: dict[str, list[FaultProxy]] = {}
        self.leaves: dict[str, NatsNode] = {}
        self.workers: list[_Worker] = []
        self._leaf_ports: list[int] = []
        self._password = secrets.token_urlsafe(18)
        """The simulator's user's password on every server (``nats_nodes.auth_conf``)."""

    # --- start ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Hub-side server(s), proxies, leaf nodes, then the workers; wait until all accept."""
        count = 3 if self.hub.cluster else 1
        self.nodes = await start_nodes(lambda: self._hub_side(count))
        for i, node in enumerate(self.nodes):
            proxy = FaultProxy(HOST, node.port, name=f"hub-link-{i}")
            await proxy.start()
            if self.hub.latency_ms:
                proxy.set_mode("delay", delay_s=self.hub.latency_ms / 1000)
            self.hub_proxies.append(proxy)
        if self.hub.leaf_nodes:
            for site in self.sites:
                await self._start_leaf(site)
        if count > 1:
            await asyncio.sleep(0.5)  # routes between the cluster's nodes form
        for _ in range(self.hub.workers):
            self._spawn_worker()
        await self.wait_workers()

    def _hub_side(self, count: int) -> list[NatsNode]:
        """The hub-side server(s) on fresh ports (not started)."""
        ports = [free_port() for _ in range(count)]
        cluster_ports = [free_port() for _ in range(count)] if count > 1 else []
        self._leaf_ports = [free_port() for _ in range(count)]
        return [
            NatsNode(
                f"hub-{i}",
                hub_conf(
                    i,
                    ports,
                    cluster_ports,
                    self._leaf_ports,
                    store=self.workdir,
                    password=self._password,
                ),
                ports[i],
                self.workdir,
            )
            for i in range(count)
        ]

    async def _start_leaf(self, site: str) -> None:
        proxies = []
        for i, leaf_port in enumerate(self._leaf_ports):
            proxy = FaultProxy(HOST, leaf_port, name=f"site-{site}-link-{i}")
            await proxy.start()
            proxies.append(proxy)
        self.site_proxies[site] = proxies
        remotes = [self._url("nats-leaf", p.port) for p in proxies]
        (self.leaves[site],) = await start_nodes(lambda: [self._leaf(site, remotes, free_port())])

    def _leaf(self, site: str, remotes: list[str], port: int) -> NatsNode:
        """The leaf node of ``site`` on ``port`` (not started)."""
        if not self.leaf_jetstream:
            urls = ", ".join(f'"{url}"' for url in remotes)
            conf = (
                f"listen: {HOST}:{port}\nserver_name: leaf-{site}\n"
                f"leafnodes {{ reconnect: 1s\n  remotes: [ {{ urls: [ {urls} ] }} ] }}\n"
            )
        else:
            # The site's own JetStream domain: deferred batch lines wait here while the link is cut.
            conf = render_leaf_config(
                LeafConfig(
                    domain=site,
                    store_dir=self.workdir / f"leaf-{site}-js",
                    remote_urls=remotes,
                    listen=f"{HOST}:{port}",
                    server_name=f"leaf-{site}",
                    max_file_store="256MB",
                )
            )
        return NatsNode(
            f"leaf-{site}", f"{conf}\n{auth_conf(self._password)}\n", port, self.workdir
        )

    # --- what clients connect to ---------------------------------------------------------------
    def _url(self, scheme: str, port: int) -> str:
        """A URL on loopback with the simulator's user and password in it."""
        return f"{scheme}://{SIM_USER}:{self._password}@{HOST}:{port}"

    def device_url(self, site: str) -> str:
        """The NATS URL(s) the devices of ``site`` use."""
        if self.hub.leaf_nodes:
            return self._url("nats", self.leaves[site].port)
        return ",".join(self._url("nats", n.port) for n in self.nodes)

    def hub_url(self) -> str:
        """The hub-side servers themselves (no proxy): for the harness's own look at the hub."""
        return ",".join(self._url("nats", n.port) for n in self.nodes)

    async def registry_summary(self, devices: Collection[str]) -> dict[str, Any]:
        """The hub registry's summary (``hubctl stats --json``'s own ``fleet_summary``) over
        ``devices``, the scenario's own, by name."""
        try:
            nc = await nats.connect(
                self.hub_url().split(","), connect_timeout=10, max_reconnect_attempts=0
            )
        except Exception as exc:  # no server, refused …
            raise TopologyError(f"the hub-side NATS could not be reached: {exc}") from None
        try:
            entries = await (await Registry.open(nc, create=False)).entries()
        except RegistryError as exc:
            raise TopologyError(str(exc)) from None
        finally:
            await nc.close()
        wanted = set(devices)
        return fleet_summary([e for e in entries if e.device in wanted], now=time.time())

    async def hub_report(self, out_dir: Path) -> None:
        """``hubctl report --since all --out out_dir``: the hub's own report of this fleet."""
        await run_hubctl(
            "report",
            "--since",
            "all",
            "--out",
            str(out_dir),
            "--nats-url",
            self.hub_url(),
            timeout=120,
        )

    def worker_url(self) -> str:
        """The NATS URL(s) hub workers use (through the hub-link proxies)."""
        return ",".join(self._url("nats", p.port) for p in self.hub_proxies)

    # --- workers -------------------------------------------------------------------------------
    def _spawn_worker(self) -> _Worker:
        index = len(self.workers)
        conf = self.workdir / "hub.toml"
        conf.write_text(
            f'[[models]]\nname = "{self.hub.model}"\nbackend = "echo"\n'
            f"echo_delay_s = {self.hub.echo_delay_s}\n"
        )
        logfile = open(self.workdir / f"worker-{index}.log", "wb")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [
                *hubctl_command(),
                "serve",
                "--config",
                str(conf),
                "--nats-url",
                self.worker_url(),
                "--concurrency",
                str(self.hub.concurrency),
                "--log-level",
                "info",
                "--drain-timeout",
                "1",
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent,
        )
        logfile.close()
        worker = _Worker(index, proc)
        self.workers.append(worker)
        return worker

    async def wait_workers(self, timeout: float = 60.0) -> None:
        """Wait until every live worker answers ``$SRV.PING`` on the hub side and at every site.

        Through a leaf node the ping proves that the workers' subscriptions reached the site:
        before that, a device's request finds no responders.
        """
        live = [w for w in self.workers if w.process.poll() is None]
        if not live:
            return
        urls = [self.worker_url(), *(self.device_url(site) for site in self.leaves)]
        deadline = time.monotonic() + timeout
        for url in urls:
            await self._wait_pings(url, live, deadline, timeout)

    async def _wait_pings(
        self, url: str, live: list[_Worker], deadline: float, timeout: float
    ) -> None:
        import nats

        # The probe's replies come to the probe device's own inbox (the hub answers nowhere else).
        nc = await nats.connect(
            url.split(","), connect_timeout=2, inbox_prefix=inbox_prefix(PROBE_DEVICE)
        )
        try:
            while True:
                for w in live:
                    if w.process.poll() is not None:
                        raise TopologyError(
                            f"hub worker {w.index} exited ({w.process.returncode}); "
                            f"see {self.workdir}/worker-{w.index}.log"
                        )
                seen = await ping_count(nc)
                if seen >= len(live) and await infer_reaches_hub(nc, self.hub.model):
                    return
                if time.monotonic() > deadline:
                    raise TopologyError(
                        f"only {seen} of {len(live)} hub workers answered $SRV.PING at {url} in "
                        f"{timeout:g} s; see {self.workdir}/worker-*.log"
                    )
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    async def add_worker(self) -> int:
        """Start one more worker; returns its index once it serves."""
        worker = self._spawn_worker()
        await self.wait_workers()
        return worker.index

    def kill_worker(self, which: int | str) -> list[int]:
        """SIGKILL one worker (by start index) or ``"all"`` live ones; returns the indexes killed."""
        targets = [
            w
            for w in self.workers
            if w.process.poll() is None and (which == "all" or w.index == which)
        ]
        if not targets and which != "all":
            raise TopologyError(f"no live hub worker {which}; workers: {len(self.workers)}")
        for w in targets:
            w.process.kill()
            w.process.wait()
        return [w.index for w in targets]

    def live_workers(self) -> int:
        """Workers still running."""
        return sum(w.process.poll() is None for w in self.workers)

    # --- NATS faults ---------------------------------------------------------------------------
    async def restart_node(self, index: int, *, down_s: float) -> None:
        """Kill hub-side server ``index`` (SIGKILL), wait ``down_s``, start it on the same ports."""
        node = self.nodes[index]
        node.stop(kill=True)
        await asyncio.sleep(down_s)
        node.start()
        await node.wait_ready()

    # --- stop ----------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop workers (SIGTERM, then SIGKILL), leaves, proxies and the hub side."""
        for w in self.workers:
            if w.process.poll() is None:
                w.process.terminate()
        for w in self.workers:
            try:
                await asyncio.to_thread(w.process.wait, 5)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
        for leaf in self.leaves.values():
            leaf.stop()
        for proxy in [*self.hub_proxies, *(p for ps in self.site_proxies.values() for p in ps)]:
            await proxy.close()
        for node in self.nodes:
            node.stop()
