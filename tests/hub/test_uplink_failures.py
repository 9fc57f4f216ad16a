"""How the Uplink fails: no responders, no connection, open circuit, spent budget, gaps, dead hub."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from edge_agent.uplink import CloudFailed, CloudUnavailable, TokenBudget, Uplink
from shared.protocol import ChunkMessage, EndMessage, encode
from tests.hub.conftest import ECHO, chat, hub_settings, serving_hub, wait_serving
from tests.nats_server import NatsServer, free_port


async def test_no_responders_is_detected_fast(uplink: Uplink) -> None:
    start = time.monotonic()
    with pytest.raises(CloudUnavailable) as info:
        await uplink.complete(chat("hi"), timeout=10)
    assert info.value.reason == "no_responders"
    with pytest.raises(CloudUnavailable) as info:
        async for _ in uplink.stream(chat("hi"), timeout=10, first_chunk_timeout=10):
            pass
    assert info.value.reason == "no_responders"
    assert time.monotonic() - start < 1.0


async def test_connect_does_not_block_when_nats_is_down() -> None:
    link = Uplink(f"nats://127.0.0.1:{free_port()}", device="d", connect_timeout_s=0.5)
    start = time.monotonic()
    await link.connect()
    assert time.monotonic() - start < 0.1
    assert not link.available()
    with pytest.raises(CloudUnavailable) as info:
        await link.complete(chat("hi"), timeout=1)
    assert info.value.reason == "not_connected"
    await link.close()


async def test_breaker_opens_after_failures_and_half_opens_after_cooldown(
    nats_server: NatsServer, uplink: Uplink
) -> None:
    for _ in range(3):  # threshold 3, nobody serves the model yet
        with pytest.raises(CloudUnavailable):
            await uplink.complete(chat("hi"), timeout=1)
    assert uplink.breaker.state == "open" and not uplink.available()
    with pytest.raises(CloudUnavailable) as info:
        await uplink.complete(chat("hi"), timeout=1)
    assert info.value.reason == "circuit_open"
    async with serving_hub(hub_settings(nats_server.url)):
        await asyncio.sleep(0.25)  # the 0.2 s cooldown
        assert uplink.breaker.state == "half_open" and uplink.available()
        assert (await uplink.complete(chat("probe"), timeout=5)).text == "probe"
        assert uplink.breaker.state == "closed"


async def test_spent_budget_stops_escalation(nats_server: NatsServer) -> None:
    link = Uplink(nats_server.url, device="d", budget=TokenBudget(daily_tokens=5))
    await link.connect()
    assert await link.wait_connected(5)
    try:
        async with serving_hub(hub_settings(nats_server.url)):
            await link.complete(chat("one two three four"), timeout=5)  # 8 tokens > 5
            assert not link.available()
            with pytest.raises(CloudUnavailable) as info:
                await link.complete(chat("again"), timeout=5)
            assert info.value.reason == "budget_spent"
    finally:
        await link.close()


async def test_sequence_gap_fails_the_stream(nats_server: NatsServer, uplink: Uplink) -> None:
    nc = await nats.connect(nats_server.url)

    async def gappy_responder(msg: Msg) -> None:
        """Stands in for a hub that loses chunk 1."""
        for seq in (0, 2):
            await nc.publish(msg.reply, encode(ChunkMessage(id="x", seq=seq, text="t")))

    await nc.subscribe(f"agl.v1.infer.{ECHO}", cb=gappy_responder)
    await nc.flush()  # the server must know the subscription before the uplink publishes
    try:
        stream = uplink.stream(chat("hi"), timeout=2, first_chunk_timeout=2)
        assert await anext(stream) == "t"
        with pytest.raises(CloudFailed) as info:
            await anext(stream)
        assert info.value.code == "gap" and info.value.tokens_sent
    finally:
        await nc.close()


@pytest.fixture()
async def hub_process(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``python -m cloud_hub.cli serve`` with a slow echo model, ready to answer."""
    config = tmp_path / "hub.toml"
    config.write_text(f'[[models]]\nname = "{ECHO}"\nbackend = "echo"\necho_delay_s = 0.05\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloud_hub.cli",
            "serve",
            "--nats-url",
            nats_server.url,
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
    )
    nc = await nats.connect(nats_server.url)
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    await nc.request("$SRV.PING.agl-hub", b"", timeout=0.5)
                    break
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    assert proc.poll() is None, "the hub process exited during start-up"
                    await asyncio.sleep(0.05)
        await wait_serving(nats_server.url, [ECHO])
        yield proc
    finally:
        await nc.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_hub_killed_mid_stream_raises_cloud_failed_with_tokens_sent(
    hub_process: subprocess.Popen[bytes], uplink: Uplink
) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    stream = uplink.stream(chat(words), timeout=0.5, first_chunk_timeout=5)
    assert await anext(stream) == "w0"
    hub_process.kill()
    start = time.monotonic()
    with pytest.raises(CloudFailed) as info:
        async for _ in stream:
            pass
    assert info.value.tokens_sent
    assert time.monotonic() - start < 1.5


async def test_sigterm_drains_in_flight_streams_then_exits(
    hub_process: subprocess.Popen[bytes], uplink: Uplink
) -> None:
    stream = uplink.stream(chat("a b c d e f g h"), timeout=2, first_chunk_timeout=5)
    assert await anext(stream) == "a"
    hub_process.send_signal(signal.SIGTERM)
    rest = [piece async for piece in stream]
    assert "".join(p for p in rest if isinstance(p, str)) == " b c d e f g h"
    assert isinstance(rest[-1], EndMessage)
    async with asyncio.timeout(10):
        while hub_process.poll() is None:
            await asyncio.sleep(0.05)
    assert hub_process.returncode == 0
