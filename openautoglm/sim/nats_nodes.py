"""nats-server processes for the simulator and the probes that tell when they serve.

node = NatsNode("hub-0", hub_conf(0, ports, [], leaf_ports, store=d, password=pw), ports[0], d)
node.start(); await node.wait_ready(); node.stop(kill=True)
await ping_count(nc)                       # agl-hub workers answering $SRV.PING
await infer_reaches_hub(nc, "sim-hub")     # inference interest reached this server
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openautoglm.sim.errors import TopologyError
from shared.embedded_nats import listening, nats_server_binary, ports_file_args
from shared.protocol import infer_subject

__all__ = [
    "HOST",
    "PROBE_DEVICE",
    "SIM_USER",
    "NatsNode",
    "auth_conf",
    "die_with_parent",
    "hub_conf",
    "infer_reaches_hub",
    "ping_count",
    "start_nodes",
]

log = logging.getLogger("openautoglm.sim.nats_nodes")

HOST = "127.0.0.1"
#: prctl option: the signal a child gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: The user the simulator's clients and leaf links log in as (its password is made per run).
SIM_USER = "sim"
#: The device id of the harness's readiness probes (their replies come to its inbox).
PROBE_DEVICE = "sim-probe"


@dataclass
class NatsNode:
    """One nats-server process with a config file; ports survive a restart."""

    name: str
    config: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def ports_dir(self) -> Path:
        """Where the server writes its ports file once it listens (``listening``)."""
        return self.workdir / f"{self.name}.ports.d"

    def start(self) -> None:
        conf = self.workdir / f"{self.name}.conf"
        conf.write_text(self.config)
        logfile = self.workdir / f"{self.name}.log"
        self.ports_dir.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                *("-c", str(conf), "-l", str(logfile)),
                *ports_file_args(self.ports_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    async def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.process
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise TopologyError(
                    f"nats-server {self.name} exited ({code}); see {self.workdir / self.name}.log"
                )
            # Our own process listening (its ports file), not another server holding the port.
            if listening(proc, self.ports_dir):
                return
            await asyncio.sleep(0.05)
        raise TopologyError(f"nats-server {self.name} did not listen on {self.port} in {timeout} s")

    def lost_its_port(self) -> bool:
        """Whether the server exited because another process took its port first.

        Ports come from ``free_port()``: free when asked, but any process (an outgoing
        connection's ephemeral port too) may bind one before the server does.
        """
        log = self.workdir / f"{self.name}.log"
        try:
            return "address already in use" in log.read_text(errors="replace")
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def infer_reaches_hub(nc: Any, model: str) -> bool:
    """Whether an inference subject has responders from here (queue interest propagated).

    A bad body on purpose: any reply (the hub's error) proves the route; "no responders"
    means the workers' queue subscriptions have not reached this server yet.
    """
    import nats.errors

    try:
        await nc.request(infer_subject(PROBE_DEVICE, model), b"{}", timeout=1.0)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    return True


async def ping_count(nc: object) -> int:
    """How many ``agl-hub`` micro services answer ``$SRV.PING`` within 0.3 s."""
    inbox = nc.new_inbox()  # type: ignore[attr-defined]
    replies = 0
    sub = await nc.subscribe(inbox)  # type: ignore[attr-defined]
    try:
        await nc.publish("$SRV.PING.agl-hub", b"", reply=inbox)  # type: ignore[attr-defined]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                async for _ in sub.messages:
                    replies += 1
    finally:
        await sub.unsubscribe()
    return replies


def auth_conf(password: str) -> str:
    """The simulator's servers take only its own clients and leaves (user ``SIM_USER``).

    Open servers let strays in: an agent of an earlier run, still reconnecting to a port this
    run was given, would beat into the fleet's registry and send it requests.
    """
    return f'authorization {{ user: {SIM_USER}, password: "{password}" }}'


def hub_conf(
    i: int,
    ports: list[int],
    cluster_ports: list[int],
    leaf_ports: list[int],
    *,
    store: Path,
    password: str,
) -> str:
    """Hub-side server ``i``: JetStream (domain ``hub``: the registry, batches), a leaf listener
    that advertises nothing, cluster routes to the others when there are several, and the
    simulator's user (:func:`auth_conf`) for clients and leaves alike."""
    lines = [
        f"listen: {HOST}:{ports[i]}",
        f"server_name: hub-{i}",
        auth_conf(password),
        f'jetstream {{ store_dir: "{store / f"js-{i}"}"\n  domain: hub }}',
        f"leafnodes {{ listen: {HOST}:{leaf_ports[i]}\n  no_advertise: true }}",
    ]
    if cluster_ports:
        routes = ", ".join(
            f'"nats-route://{HOST}:{p}"' for j, p in enumerate(cluster_ports) if j != i
        )
        lines.append(
            f"cluster {{ name: agl-sim\n  listen: {HOST}:{cluster_ports[i]}\n"
            f"  no_advertise: true\n  routes: [ {routes} ] }}"
        )
    return "\n".join(lines) + "\n"


def die_with_parent() -> None:
    """``preexec_fn`` for the simulator's children: a new session (a Ctrl-C in the terminal is the
    simulator's to handle), and SIGKILL when the simulator dies, even by SIGKILL (Linux)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


#: Tries at starting servers whose port another process took between ``free_port()`` and bind.
_START_ATTEMPTS = 3


async def start_nodes(make: Callable[[], list[NatsNode]]) -> list[NatsNode]:
    """Start the servers ``make()`` builds and wait until they listen; when one lost its port to
    another process, stop them all and try again on fresh ports (``make`` picks them)."""
    attempt = 1
    while True:
        nodes = make()
        for node in nodes:
            node.start()
        try:
            await asyncio.gather(*(n.wait_ready() for n in nodes))
            return nodes
        except TopologyError:
            lost = [n for n in nodes if n.lost_its_port()]
            for node in nodes:
                node.stop(kill=True)
            if not lost or attempt == _START_ATTEMPTS:
                raise
            log.info("%s lost its port to another process; starting again", lost[0].name)
            for node in lost:  # the next try's log starts clean
                (node.workdir / f"{node.name}.log").unlink(missing_ok=True)
            attempt += 1
