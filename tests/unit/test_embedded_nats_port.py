"""A nats-server we start is ready only when *it* listens, not when someone answers on its port.

Another nats-server holding the port answers a probe with its own INFO while ours exits with
"address already in use"; trusting the probe had an agent talk to a stranger's server.
"""

from __future__ import annotations

import asyncio

import nats
import pytest

from shared.embedded_nats import EmbeddedNatsError, embedded_nats
from shared.leaf import running_nats_config


def test_a_port_held_by_another_nats_server_is_an_error_not_a_server() -> None:
    with embedded_nats() as other:
        taken = f"is port {other.port} taken"
        with pytest.raises(EmbeddedNatsError, match=taken), embedded_nats(port=other.port):
            pass
        config = f"listen: 127.0.0.1:{other.port}\n"
        with (
            pytest.raises(EmbeddedNatsError, match=taken),
            running_nats_config(config, port=other.port),
        ):
            pass
        assert other.process.poll() is None  # the first one is untouched


def test_a_free_port_is_taken_and_served() -> None:
    async def round_trip(url: str) -> bytes:
        nc = await nats.connect(url)
        try:
            sub = await nc.subscribe("agl.test.echo")
            await nc.publish("agl.test.echo", b"ping")
            return (await sub.next_msg(timeout=5)).data
        finally:
            await nc.close()

    with embedded_nats() as server:
        assert server.url.endswith(f":{server.port}")
        assert asyncio.run(round_trip(server.url)) == b"ping"  # served by the one we started
