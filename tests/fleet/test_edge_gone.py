"""An edge that goes away mid-stream stops the hub's work, on a real operator-mode server."""

from __future__ import annotations

import asyncio

import nats
import pytest

from cloud_hub.settings import HubModelSpec
from shared.protocol import PROBE_HEADER, decode_reply, encode
from shared.subjects import inbox_prefix, infer_subject
from tests.fixtures.hubs import hub_settings, infer_request, serving_hub
from tests.fixtures.names import ECHO
from tests.fleet.conftest import OperatorNats

WORDS = " ".join(f"w{i}" for i in range(40))  # 8 s at 0.2 s a word


@pytest.mark.parametrize("goodbye", ["close", "cancel"])
async def test_a_device_leaving_mid_stream_stops_the_hub(
    op_nats: OperatorNats, goodbye: str
) -> None:
    settings = hub_settings(
        op_nats.url,
        HubModelSpec(name=ECHO, backend="echo", echo_delay_s=0.2),
        credentials=op_nats.hub_creds,
        interest_check_s=0.5,
    )
    async with serving_hub(settings) as hub:
        nc = await nats.connect(
            op_nats.url,
            user_credentials=str(op_nats.enroll("dev-gone")),
            inbox_prefix=inbox_prefix("dev-gone"),
        )
        req = infer_request(WORDS, stream=True, max_tokens=1000)
        req = req.model_copy(update={"device": "dev-gone"})
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(infer_subject("dev-gone", ECHO), encode(req), reply=inbox)
        while True:
            msg = await sub.next_msg(timeout=5)
            if not (msg.headers and msg.headers.get(PROBE_HEADER)):
                assert decode_reply(msg.data).type == "chunk"
                break
        if goodbye == "cancel":  # the edge says so on its own cancel subject
            await nc.publish(f"agl.v1.dev.dev-gone.cancel.{req.id}", b"")
            await nc.flush()
        await nc.close()  # either way, nobody listens any more
        async with asyncio.timeout(5):  # far less than the 8 s the answer would take
            while not hub.finished:
                await asyncio.sleep(0.05)
    done = hub.finished[-1]
    assert (done.id, done.finish_reason) == (req.id, "cancelled")
    assert done.completion_tokens < 30
