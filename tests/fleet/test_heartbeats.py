"""Heartbeats into the registry on a real operator-mode server: schema, rate limit, liveness."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from click.testing import CliRunner
from nats.aio.client import Client

from cloud_hub.cli import main as hubctl
from cloud_hub.serving import HubService
from shared.heartbeat import Artifact, Heartbeat, encode_heartbeat
from shared.protocol import decode_reply, encode
from shared.subjects import heartbeat_subject, inbox_prefix, infer_subject
from tests.fixtures.agents import edge
from tests.fixtures.hubs import hub_in_thread, hub_settings, infer_request, serving_hub
from tests.fixtures.names import ECHO
from tests.fixtures.waiting import apoll, poll
from tests.fleet.conftest import OperatorNats

BEAT = Heartbeat(
    agent_version="0.1.0",
    interval_s=10,
    uptime_s=5,
    models=[Artifact(name="m", sha256="0" * 64)],
    requests_by_reason={"default": 3, "policy": 1},
    escalations_by_reason={"policy": 1},
    tokens_by_tier={"edge": 30, "cloud": 12},
)


async def device_client(op_nats: OperatorNats, device: str) -> Client:
    creds = op_nats.enroll(device)
    return await nats.connect(
        op_nats.url, user_credentials=str(creds), inbox_prefix=inbox_prefix(device)
    )


@pytest.fixture()
async def hub(op_nats: OperatorNats) -> AsyncIterator[HubService]:
    settings = hub_settings(
        op_nats.url,
        credentials=op_nats.hub_creds,
        heartbeat_burst=3,
        heartbeat_min_interval_s=3600,  # after the burst of 3, nothing more within the test
    )
    async with serving_hub(settings) as running:
        yield running


async def test_a_heartbeat_with_a_wrong_schema_is_rejected_counted_and_harmless(
    op_nats: OperatorNats, hub: HubService
) -> None:
    nc = await device_client(op_nats, "dev-h")
    try:
        for bad in (b"not json", b'{"v":1,"type":"heartbeat"}', b'{"v":2,"agent_version":"x"}'):
            await nc.publish(heartbeat_subject("dev-h"), bad)
        await apoll(lambda: hub.intake and hub.intake.counts["rejected"] == 3, 5, "3 rejections")
        assert hub.intake is not None and hub.intake.counts["accepted"] == 0
        text = "\n".join(
            f"{s.name}{s.labels} {s.value}"
            for f in hub.metrics.registry.collect()
            for s in f.samples
            if s.name == "agl_hub_heartbeats_total"
        )
        assert "agl_hub_heartbeats_total{'result': 'rejected'} 3.0" in text
        # The hub still serves, and still takes good heartbeats.
        msg = await nc.request(
            infer_subject("dev-h", ECHO),
            encode(infer_request("still here").model_copy(update={"device": "dev-h"})),
            timeout=5,
        )
        assert decode_reply(msg.data).type == "result"
        # (dev-h spent its burst of 3 on the bad ones: the limit counts every beat.)
        other = await device_client(op_nats, "dev-h2")
        await other.publish(heartbeat_subject("dev-h2"), encode_heartbeat(BEAT))
        intake = hub.intake
        assert intake is not None
        await apoll(lambda: intake.counts["accepted"] == 1, 5, "the good heartbeat")
        await other.close()
    finally:
        await nc.close()


async def test_a_heartbeat_flood_is_rate_limited_per_device(
    op_nats: OperatorNats, hub: HubService
) -> None:
    flood = await device_client(op_nats, "dev-flood")
    calm = await device_client(op_nats, "dev-calm")
    try:
        for _ in range(20):
            await flood.publish(heartbeat_subject("dev-flood"), encode_heartbeat(BEAT))
        await calm.publish(heartbeat_subject("dev-calm"), encode_heartbeat(BEAT))
        assert hub.intake is not None
        counts = hub.intake.counts
        await apoll(lambda: counts["accepted"] + counts["rate_limited"] == 21, 5, "21 beats")
        assert (counts["accepted"], counts["rate_limited"]) == (4, 17)  # 3 of the flood + calm
        assert hub.intake.registry is not None
        entry = await hub.intake.registry.get("dev-calm")
        assert entry is not None and entry.heartbeat == BEAT
    finally:
        await flood.close()
        await calm.close()


def listed(op_nats: OperatorNats, *args: str) -> Any:
    result = CliRunner().invoke(
        hubctl,
        [
            "devices",
            "list",
            "--json",
            "--dir",
            str(op_nats.store.root),
            "--nats-url",
            op_nats.url,
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def state_of(op_nats: OperatorNats, device: str) -> str | None:
    rows = [r for r in listed(op_nats) if r["device"] == device]
    return rows[0]["state"] if rows else None


def test_heartbeats_show_in_devices_list_and_a_stopped_agent_turns_stale_then_offline(
    op_nats: OperatorNats,
) -> None:
    runner = CliRunner()
    auth = str(op_nats.store.root)
    enrolled = runner.invoke(
        hubctl,
        [
            "devices",
            "enroll",
            "dev-live",
            "--dir",
            auth,
            "--site",
            "lab",
            "--label",
            "rack=2",
            "--out",
            str(op_nats.creds_dir),
            "--nats-url",
            op_nats.url,
        ],
    )
    assert enrolled.exit_code == 0, enrolled.output
    assert "warning" not in enrolled.output, enrolled.output  # recorded in the registry
    assert state_of(op_nats, "dev-live") == "never_seen"
    creds = op_nats.creds_dir / "dev-live.creds"
    settings = hub_settings(op_nats.url, credentials=op_nats.hub_creds)
    with hub_in_thread(settings):
        with edge(
            op_nats.url, device_id="dev-live", hub={"credentials": str(creds), "heartbeat_s": 0.25}
        ) as agent:
            poll(lambda: state_of(op_nats, "dev-live") == "online", 15, "dev-live online")
            row = next(r for r in listed(op_nats, "--site", "lab") if r["device"] == "dev-live")
            assert (row["site"], row["labels"], row["breaker"]) == ("lab", "rack=2", "closed")
            assert row["version"] and row["models"] == 1
            assert agent.state.uplink is not None and agent.state.uplink.credentials == creds
        # The agent is gone: 3 missed beats make it stale, 10 offline.
        poll(lambda: state_of(op_nats, "dev-live") == "stale", 10, "dev-live stale")
        poll(lambda: state_of(op_nats, "dev-live") == "offline", 10, "dev-live offline")
    assert listed(op_nats, "--site", "elsewhere") == []
    shown = runner.invoke(
        hubctl, ["devices", "show", "dev-live", "--dir", auth, "--nats-url", op_nats.url]
    )
    assert shown.exit_code == 0, shown.output
    assert "state             offline" in shown.output and "site              lab" in shown.output
    stats = runner.invoke(hubctl, ["stats", "--json", "--dir", auth, "--nats-url", op_nats.url])
    assert stats.exit_code == 0, stats.output
    summary = json.loads(stats.output)
    assert summary["devices"]["offline"] == 1 and summary["devices"]["total"] == 1
