"""The hub stops work nobody waits for, and keeps serving edges that do wait."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest

from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import Uplink
from shared.protocol import EndMessage, encode, infer_subject, probe_subject
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import DEVICE, ECHO
from tests.fixtures.nats import NatsServer

WORDS = " ".join(f"w{i}" for i in range(400))
"""An answer of 400 words: at 20 ms a word the echo stand-in needs 8 s for it."""


def slow_echo(url: str) -> object:
    spec = HubModelSpec(name=ECHO, backend="echo", echo_delay_s=0.02)
    return hub_settings(url, spec, interest_check_s=0.2)


def test_probe_subjects_follow_the_reply_kind() -> None:
    assert probe_subject("_INBOX.abc", stream=True) == "_INBOX.abc"
    assert probe_subject("_INBOX.abc.tok", stream=False) == "_INBOX.abc.aglprobe"
    assert probe_subject("_INBOX.dev-1.abc.tok", stream=False) == "_INBOX.dev-1.abc.aglprobe"
    assert probe_subject("lonely", stream=False) is None
    assert probe_subject("a.b", stream=False) is None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_nobody_listens_for_is_stopped(
    nats_server: NatsServer, stream: bool
) -> None:
    async with serving_hub(slow_echo(nats_server.url)) as hub:  # type: ignore[arg-type]
        nc = await nats.connect(nats_server.url)
        try:
            req = infer_request(WORDS, stream=stream, max_tokens=1000)
            # A reply subject with no subscriber: a dead edge, or a forged subject.
            await nc.publish(
                infer_subject(DEVICE, ECHO), encode(req), reply=f"_INBOX.{DEVICE}.gone.reply"
            )
            async with asyncio.timeout(5):  # far less than the 8 s the answer would take
                while not hub.finished:
                    await asyncio.sleep(0.05)
        finally:
            await nc.close()
        done = hub.finished[-1]
        assert done.id == req.id
        assert done.finish_reason == "cancelled"
        assert done.completion_tokens < 400


async def test_a_long_stream_with_a_listener_survives_the_probes(
    nats_server: NatsServer, uplink: Uplink
) -> None:
    async with serving_hub(slow_echo(nats_server.url)) as hub:  # type: ignore[arg-type]
        words = " ".join(f"w{i}" for i in range(60))  # 1.2 s: several probes arrive
        pieces = [
            p
            async for p in uplink.stream(
                infer_request(words, stream=True, max_tokens=100), timeout=5, first_chunk_timeout=5
            )
        ]
    assert isinstance(pieces[-1], EndMessage)
    assert "".join(p for p in pieces[:-1] if isinstance(p, str)) == words
    assert hub.finished[-1].finish_reason != "cancelled"


async def test_a_long_answer_with_a_listener_survives_the_probes(
    nats_server: NatsServer, uplink: Uplink
) -> None:
    async with serving_hub(slow_echo(nats_server.url)) as hub:  # type: ignore[arg-type]
        words = " ".join(f"w{i}" for i in range(60))
        result = await uplink.complete(infer_request(words, max_tokens=100), timeout=5)
    assert result.text == words
    assert hub.finished[-1].finish_reason != "cancelled"


async def test_a_request_without_a_reply_subject_is_one_warning(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving_hub(hub_settings(nats_server.url)) as hub:
        nc = await nats.connect(nats_server.url)
        try:
            with caplog.at_level(logging.DEBUG, logger="cloud_hub"):
                await nc.publish(infer_subject(DEVICE, ECHO), encode(infer_request("hi")))
                await nc.flush()
                async with asyncio.timeout(5):
                    while not any("no reply subject" in r.message for r in caplog.records):
                        await asyncio.sleep(0.02)
        finally:
            await nc.close()
        assert hub.in_flight == 0 and not hub.finished
    noted = [r for r in caplog.records if "no reply subject" in r.message]
    assert len(noted) == 1 and noted[0].levelno == logging.WARNING and noted[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
