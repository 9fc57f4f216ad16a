"""How the Uplink fails: no responders, no connection, open circuit, spent budget, gaps, dead hub."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from edge_agent.uplink import CloudFailed, CloudUnavailable, TokenBudget, Uplink
from shared.protocol import ChunkMessage, EndMessage, encode
from shared.subjects import infer_subject
from tests.fixtures.hubs import (
    HubProcess,
    echo_spec,
    hub_process,
    hub_settings,
    infer_request,
    serving_hub,
)
from tests.fixtures.names import DEVICE, ECHO
from tests.fixtures.nats import NatsServer, free_port
from tests.fixtures.waiting import apoll


async def test_no_responders_is_told_apart_from_a_timeout(uplink: Uplink) -> None:
    with pytest.raises(CloudUnavailable) as info:
        await uplink.complete(infer_request("hi"), timeout=10)
    assert info.value.reason == "no_responders"
    with pytest.raises(CloudUnavailable) as info:
        async for _ in uplink.stream(infer_request("hi"), timeout=10, first_chunk_timeout=10):
            pass
    assert info.value.reason == "no_responders"


async def test_connect_does_not_block_when_nats_is_down() -> None:
    link = Uplink(f"nats://127.0.0.1:{free_port()}", device="d", connect_timeout_s=0.5)
    await link.connect()  # returns at once; connecting goes on in the background
    assert not link.connected and not link.available()
    with pytest.raises(CloudUnavailable) as info:
        await link.complete(infer_request("hi"), timeout=1)
    assert info.value.reason == "not_connected"
    await link.close()


async def test_breaker_opens_after_failures_and_half_opens_after_cooldown(
    nats_server: NatsServer, uplink: Uplink
) -> None:
    for _ in range(3):  # threshold 3, nobody serves the model yet
        with pytest.raises(CloudUnavailable):
            await uplink.complete(infer_request("hi"), timeout=1)
    assert uplink.breaker.state == "open" and not uplink.available()
    with pytest.raises(CloudUnavailable) as info:
        await uplink.complete(infer_request("hi"), timeout=1)
    assert info.value.reason == "circuit_open"
    async with serving_hub(hub_settings(nats_server.url)):
        await apoll(lambda: uplink.breaker.state == "half_open", 5, "the 0.2 s cooldown to end")
        assert uplink.available()
        assert (await uplink.complete(infer_request("probe"), timeout=5)).text == "probe"
        assert uplink.breaker.state == "closed"


async def test_spent_budget_stops_escalation(nats_server: NatsServer) -> None:
    link = Uplink(nats_server.url, device="d", budget=TokenBudget(daily_tokens=5))
    await link.connect()
    assert await link.wait_connected(5)
    try:
        async with serving_hub(hub_settings(nats_server.url)):
            await link.complete(infer_request("one two three four"), timeout=5)  # 8 tokens > 5
            assert not link.available()
            with pytest.raises(CloudUnavailable) as info:
                await link.complete(infer_request("again"), timeout=5)
            assert info.value.reason == "budget_spent"
    finally:
        await link.close()


async def test_sequence_gap_fails_the_stream(nats_server: NatsServer, uplink: Uplink) -> None:
    nc = await nats.connect(nats_server.url)

    async def gappy_responder(msg: Msg) -> None:
        """Stands in for a hub that loses chunk 1."""
        for seq in (0, 2):
            await nc.publish(msg.reply, encode(ChunkMessage(id="x", seq=seq, text="t")))

    await nc.subscribe(infer_subject(DEVICE, ECHO), cb=gappy_responder)
    await nc.flush()  # the server must know the subscription before the uplink publishes

    async def answered() -> bool:
        # The server routes a request to the responder (once, on a loaded machine, the uplink's
        # request right after the flush got "no responders"; its 503 is this test's premise).
        try:
            await nc.request(infer_subject(DEVICE, ECHO), b"probe", timeout=1)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return False
        return True

    try:
        await apoll(answered, 10, "the responder to be routed")
        stream = uplink.stream(infer_request("hi"), timeout=2, first_chunk_timeout=2)
        assert await anext(stream) == "t"
        with pytest.raises(CloudFailed) as info:
            await anext(stream)
        assert info.value.code == "gap" and info.value.tokens_sent
    finally:
        await nc.close()


@pytest.fixture()
def hub_proc(nats_server: NatsServer, tmp_path: Path) -> Iterator[HubProcess]:
    """``hubctl serve`` with a slow echo model (50 ms a word), ready to answer."""
    with hub_process(hub_settings(nats_server.url, echo_spec(delay_s=0.05)), tmp_path) as hub:
        yield hub


async def test_hub_killed_mid_stream_raises_cloud_failed_with_tokens_sent(
    hub_proc: HubProcess, uplink: Uplink
) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    stream = uplink.stream(infer_request(words), timeout=0.5, first_chunk_timeout=5)
    assert await anext(stream) == "w0"
    hub_proc.kill()
    with pytest.raises(CloudFailed) as info:
        async for _ in stream:
            pass
    assert info.value.tokens_sent  # the caller must not retry elsewhere: text went out
    assert info.value.code == "timeout", info.value  # no chunk within the 0.5 s chunk timeout


async def test_sigterm_drains_in_flight_streams_then_exits(
    hub_proc: HubProcess, uplink: Uplink
) -> None:
    stream = uplink.stream(infer_request("a b c d e f g h"), timeout=2, first_chunk_timeout=5)
    assert await anext(stream) == "a"
    hub_proc.proc.send_signal(signal.SIGTERM)
    rest = [piece async for piece in stream]
    assert "".join(p for p in rest if isinstance(p, str)) == " b c d e f g h"
    assert isinstance(rest[-1], EndMessage)
    await apoll(lambda: not hub_proc.alive(), 10, "the hub to exit after draining")
    assert hub_proc.proc.returncode == 0
