"""The simulator's NATS servers take only the simulator's own clients.

A client without the run's password (an agent of another run still reconnecting to a port
this run was given) is refused on every server, hub side and leaves; the simulator's own URLs
connect, a request from a site's leaf reaches a responder on the hub side, and the harness's own
registry read works on every layout (on the three-server cluster it once could not connect).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest

from cloud_hub.control.registry import Registry
from openautoglm.sim.nats_nodes import HOST
from openautoglm.sim.scenario import HubSpec
from openautoglm.sim.topology import Topology


async def anonymous_connect_reply(port: int) -> str:
    """What a server answers a CONNECT without credentials (the NATS text protocol)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        info = await asyncio.wait_for(reader.readline(), 10)
        assert info.startswith(b"INFO "), info
        assert json.loads(info[5:]).get("auth_required") is True
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("cluster", "leaf_jetstream"),
    [(False, False), (False, True), (True, False)],
    ids=["plain-leaf", "jetstream-leaf", "cluster"],
)
async def test_only_the_simulators_user_gets_in(
    tmp_path: Path, cluster: bool, leaf_jetstream: bool
) -> None:
    topo = Topology(
        HubSpec(workers=0, cluster=cluster),
        sites=["plant-a"],
        workdir=tmp_path,
        leaf_jetstream=leaf_jetstream,
    )
    try:
        await topo.start()
        servers = [*topo.nodes, *topo.leaves.values()]
        assert len(servers) == (4 if cluster else 2)
        for node in servers:
            reply = await anonymous_connect_reply(node.port)
            assert reply == "-ERR 'Authorization Violation'", (node.name, reply)

        hub = await nats.connect(topo.hub_url().split(","), connect_timeout=5)
        site = await nats.connect(topo.device_url("plant-a"), connect_timeout=5)
        try:

            async def answer(msg: nats.aio.msg.Msg) -> None:
                await msg.respond(b"hub side")

            await hub.subscribe("sim.auth.probe", cb=answer)
            await hub.flush()
            reply = None
            for _ in range(100):  # the subscription reaches the leaf over its (logged-in) link
                try:
                    reply = await site.request("sim.auth.probe", b"", timeout=0.2)
                    break
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    await asyncio.sleep(0.1)
            assert reply is not None and reply.data == b"hub side"
            await Registry.open(hub, create=True)  # what a hub worker does at start
            summary = await topo.registry_summary(["plant-a-000"])
            assert summary["devices"]["total"] == 0
        finally:
            await site.close()
            await hub.close()
    finally:
        await topo.close()
