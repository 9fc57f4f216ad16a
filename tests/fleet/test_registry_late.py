"""A hub that starts before its NATS server has JetStream keeps serving heartbeats (counted, not
stored) and opens the device registry once JetStream is there, without a restart of the hub."""

from __future__ import annotations

import nats
from prometheus_client import CollectorRegistry

from cloud_hub.control.intake import HeartbeatIntake
from shared.embedded_nats import embedded_nats, free_port
from shared.heartbeat import encode_heartbeat
from shared.subjects import heartbeat_subject
from shared.telemetry import Instruments, Telemetry
from tests.fixtures.hubs import hub_settings
from tests.fixtures.waiting import apoll
from tests.fleet.test_heartbeats import BEAT


async def test_the_registry_opens_once_jetstream_comes_up() -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    settings = hub_settings(url, heartbeat_min_interval_s=0.001)
    metrics = Instruments(Telemetry.disabled(component="hub"), CollectorRegistry())
    intake: HeartbeatIntake | None = None
    nc = None
    try:
        with embedded_nats(port=port, jetstream=False):
            nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
            intake = await HeartbeatIntake.start(nc, settings, metrics, registry_retry_max_s=0.5)
            assert intake.registry is None  # no JetStream: counted, not stored
            await nc.publish(heartbeat_subject("dev-early"), encode_heartbeat(BEAT))
            await apoll(lambda: intake and intake.counts["accepted"] == 1, 5, "a counted beat")
        # The same port, now with JetStream: the client reconnects, the intake opens.
        with embedded_nats(port=port):
            await apoll(lambda: intake and intake.registry is not None, 15, "the registry")
            await nc.publish(heartbeat_subject("dev-late"), encode_heartbeat(BEAT))
            await apoll(lambda: intake and intake.counts["accepted"] == 2, 5, "a stored beat")
            assert intake.registry is not None
            entry = await intake.registry.get("dev-late")
            assert entry is not None and entry.heartbeat == BEAT
            assert await intake.registry.get("dev-early") is None  # it came before
    finally:
        if intake is not None:
            await intake.stop()
        if nc is not None:
            await nc.close()
