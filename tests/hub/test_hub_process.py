"""``hubctl serve`` as a process: it stops when told, in every state, and says why."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloud_hub.serving.connection import LinkLog
from tests.fixtures.hubs import HubProcess, hub_settings
from tests.fixtures.hubs import hub_process as serving_process
from tests.fixtures.names import ECHO
from tests.fixtures.nats import free_port, nats_server

DRAIN_S = 10.0


@contextmanager
def hub_process(tmp_path: Path, nats_url: str) -> Iterator[HubProcess]:
    """``hubctl serve`` (echo model, info logs) that may not reach NATS, so no wait to serve."""
    settings = hub_settings(nats_url, drain_timeout_s=DRAIN_S)
    with serving_process(settings, tmp_path, serving=False, log_level="info") as hub:
        yield hub


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_a_hub_that_cannot_reach_nats(tmp_path: Path, sig: signal.Signals) -> None:
    closed = f"nats://127.0.0.1:{free_port()}"
    with hub_process(tmp_path, closed) as hub:
        hub.wait_for("cannot reach NATS")
        code = hub.stop(sig, DRAIN_S)
    assert code == 0, hub.output()
    assert "stopped before NATS" in hub.output()


def test_sigterm_stops_a_hub_whose_nats_went_away(tmp_path: Path) -> None:
    with nats_server() as nats, hub_process(tmp_path, nats.url) as hub:
        hub.wait_for(f"serving {ECHO}")
        nats.process.kill()
        nats.process.wait()
        hub.wait_for("lost")
        code = hub.stop(signal.SIGTERM, DRAIN_S)
    assert code == 0, hub.output()
    assert "hub stopped" in hub.output()


async def test_unreachable_nats_is_reported_once_then_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    link = LinkLog("nats://x:4222", period_s=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="cloud_hub.serving.connection"):
        for _ in range(30):  # a minute of failures, one every 2 s
            await link.error(OSError("connection refused"))
            now[0] += 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("cannot reach NATS at nats://x:4222")
    assert "still cannot reach" in lines[1]
