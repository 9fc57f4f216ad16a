"""Per-device credentials on a real operator-mode nats-server: A cannot act as B."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_hub.serving import HubService
from cloud_hub.settings import HubModelSpec
from edge_agent.uplink import CloudUnavailable, Uplink
from shared.protocol import (
    PROBE_HEADER,
    ChunkMessage,
    EndMessage,
    ErrorMessage,
    ResultMessage,
    decode_reply,
    encode,
)
from shared.subjects import cancel_subject, inbox_prefix, infer_subject
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import ECHO
from tests.fixtures.waiting import apoll
from tests.fleet.conftest import OperatorNats


class Device:
    """A raw NATS client holding one device's credentials; collects server errors."""

    def __init__(self, name: str, nc: Client, errors: list[Exception]) -> None:
        self.name, self.nc, self.errors = name, nc, errors

    def denied(self) -> list[str]:
        return [str(e) for e in self.errors if "permissions violation" in str(e)]


async def connect_device(op_nats: OperatorNats, name: str, creds: Path) -> Device:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(
        op_nats.url,
        user_credentials=str(creds),
        inbox_prefix=inbox_prefix(name),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return Device(name, nc, errors)


@pytest.fixture()
async def hub(op_nats: OperatorNats) -> AsyncIterator[HubService]:
    settings = hub_settings(
        op_nats.url,
        HubModelSpec(name=ECHO, backend="echo", echo_delay_s=0.05),
        credentials=op_nats.hub_creds,
    )
    async with serving_hub(settings) as running:
        yield running


@pytest.fixture()
async def devices(op_nats: OperatorNats) -> AsyncIterator[tuple[Device, Device]]:
    a = await connect_device(op_nats, "dev-a", op_nats.enroll("dev-a"))
    b = await connect_device(op_nats, "dev-b", op_nats.enroll("dev-b"))
    yield a, b
    await a.nc.close()
    await b.nc.close()


def chat_from(device: str, text: str = "one two three", **extra: object) -> bytes:
    return encode(infer_request(text, **extra).model_copy(update={"device": device}))  # type: ignore[arg-type]


async def test_a_device_is_served_on_its_own_subject(
    hub: HubService, devices: tuple[Device, Device]
) -> None:
    a, _ = devices
    msg = await a.nc.request(infer_subject("dev-a", ECHO), chat_from("dev-a"), timeout=5)
    reply = decode_reply(msg.data)
    assert reply.type == "result" and "one two three" in reply.text


async def test_a_cannot_publish_on_bs_subjects(
    hub: HubService, devices: tuple[Device, Device]
) -> None:
    a, _ = devices
    served_before = len(hub.finished)
    with pytest.raises(nats.errors.TimeoutError):  # the server drops it; nobody answers
        await a.nc.request(infer_subject("dev-b", ECHO), chat_from("dev-b"), timeout=1)
    await apoll(a.denied, 5, "the server's permissions violation")
    assert a.denied() == [
        f'nats: permissions violation for publish to "{infer_subject("dev-b", ECHO)}"'
    ]
    assert len(hub.finished) == served_before


async def test_a_cannot_read_bs_inbox(devices: tuple[Device, Device]) -> None:
    a, b = devices
    seen: list[bytes] = []

    async def spy(msg: Msg) -> None:
        seen.append(msg.data)

    await a.nc.subscribe("_INBOX.dev-b.>", cb=spy)
    await apoll(a.denied, 5, "the subscription's permissions violation")
    assert a.denied() == ['nats: permissions violation for subscription to "_inbox.dev-b.>"']
    await b.nc.publish("_INBOX.dev-b.secret", b"for b only")  # B may not publish there either,
    await b.nc.flush()  # but nothing may reach A in any case
    await asyncio.sleep(0.2)
    assert seen == []


async def test_a_cannot_cancel_bs_request(hub: HubService, devices: tuple[Device, Device]) -> None:
    a, b = devices
    inbox = b.nc.new_inbox()
    sub = await b.nc.subscribe(inbox)
    req = infer_request(" ".join(f"w{i}" for i in range(20)), stream=True)
    req = req.model_copy(update={"device": "dev-b"})
    await b.nc.publish(infer_subject("dev-b", ECHO), encode(req), reply=inbox)

    async def next_reply() -> ChunkMessage | EndMessage | ErrorMessage | ResultMessage:
        while True:  # the hub's interest probes (no body) go to the same inbox
            msg = await sub.next_msg(timeout=5)
            if not (msg.headers and msg.headers.get(PROBE_HEADER)):
                return decode_reply(msg.data)

    first = await next_reply()
    assert first.type == "chunk"
    await a.nc.publish(cancel_subject("dev-b", req.id), b"")  # refused by the server
    await a.nc.publish(cancel_subject("dev-a", req.id), b"")  # A's own subject: not B's request
    await a.nc.flush()
    kinds = []
    while True:
        reply = await next_reply()
        kinds.append(reply.type)
        if reply.type != "chunk":
            break
    assert kinds[-1] == "end" and isinstance(reply, EndMessage) and reply.finish_reason == "stop"
    assert len(kinds) == 20  # every other word arrived: nothing was cancelled
    await apoll(a.denied, 5, "the cancel's permissions violation")
    assert a.denied() == [
        f'nats: permissions violation for publish to "{cancel_subject("dev-b", req.id)}"'
    ]


async def test_a_reply_subject_in_another_devices_inbox_is_dropped_unanswered(
    hub: HubService, devices: tuple[Device, Device], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = devices
    got: list[bytes] = []

    async def victim(msg: Msg) -> None:
        got.append(msg.data)

    await b.nc.subscribe("_INBOX.dev-b.>", cb=victim)
    await b.nc.flush()
    with caplog.at_level(logging.WARNING, logger="cloud_hub.serving.replies"):
        # The server does not check reply subjects: A may name B's inbox. The hub must not answer.
        await a.nc.publish(
            infer_subject("dev-a", ECHO), chat_from("dev-a"), reply="_INBOX.dev-b.spoofed"
        )
        await a.nc.flush()
        await apoll(lambda: hub._guard.spoofed._value.get() == 1, 5, "the spoofed request counted")
    await asyncio.sleep(0.3)
    assert got == []
    assert "_INBOX.dev-b.spoofed is not that device's inbox" in caplog.text
    # A's own requests still work afterwards.
    msg = await a.nc.request(infer_subject("dev-a", ECHO), chat_from("dev-a"), timeout=5)
    assert decode_reply(msg.data).type == "result"


async def test_a_forged_body_device_is_refused(
    hub: HubService, devices: tuple[Device, Device]
) -> None:
    a, _ = devices
    msg = await a.nc.request(infer_subject("dev-a", ECHO), chat_from("dev-b"), timeout=5)
    reply = decode_reply(msg.data)
    assert isinstance(reply, ErrorMessage) and reply.code == "bad_request"
    assert "the body says device 'dev-b'" in reply.message
    assert "set `device` to 'dev-a'" in reply.message


async def test_uplink_reports_a_publish_outside_its_permissions_and_stops_sending(
    op_nats: OperatorNats, hub: HubService, caplog: pytest.LogCaptureFixture
) -> None:
    creds = op_nats.enroll("dev-a")
    # Misconfigured: device_id dev-b with dev-a's credentials.
    link = Uplink(op_nats.url, device="dev-b", credentials=creds)
    await link.connect()
    try:
        assert await link.wait_connected(10)
        with caplog.at_level(logging.ERROR, logger="edge_agent.uplink.client"):
            with pytest.raises(Exception):  # noqa: B017 - the first try times out
                await link.complete(infer_request("hi"), timeout=1)
            subject = infer_subject("dev-b", ECHO)
            await apoll(lambda: subject in link.denied, 5, "the uplink to note the refusal")
        # Its reply inbox (_INBOX.dev-b.…) was refused too: dev-a's creds allow _INBOX.dev-a only.
        assert link.denied[subject] == "publish"
        inbox = [s for s, verb in link.denied.items() if verb == "subscription"]
        assert len(inbox) == 1 and inbox[0].startswith("_inbox.dev-b.")
        assert f"NATS refused publish to {subject} for device dev-b ({creds})" in caplog.text
        assert "NATS refused subscription to _inbox.dev-b." in caplog.text
        assert subject in link.status()["denied_subjects"]
        with pytest.raises(CloudUnavailable) as info:  # not sent again: fails at once
            await link.complete(infer_request("again"), timeout=5)
        assert info.value.reason == "permission_denied"
        assert str(creds) in str(info.value) and subject in str(info.value)
    finally:
        await link.close()
