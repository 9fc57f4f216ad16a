"""Revocation on a real operator-mode server: cut off within 5 s, and no way back in."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nats
import nats.errors
import pytest
from click.testing import CliRunner
from nats.aio.client import Client

from cloud_hub.cli import main as hubctl
from cloud_hub.control.push import push_account
from edge_agent.uplink import CloudUnavailable, Uplink
from tests.fixtures.hubs import infer_request
from tests.fixtures.waiting import apoll
from tests.fleet.conftest import OperatorNats


async def refused_login(url: str, creds: Path) -> str:
    """ "connected", or the server's refusal."""
    nc = Client()
    try:
        await nc.connect(url, user_credentials=str(creds), allow_reconnect=False, connect_timeout=3)
        return "connected"
    except nats.errors.Error as exc:
        return str(exc)
    finally:
        await nc.close()  # also after a refusal: nats-py leaves the socket open otherwise


async def test_a_revoked_device_is_cut_off_and_cannot_reconnect(
    op_nats: OperatorNats, caplog: pytest.LogCaptureFixture
) -> None:
    creds = op_nats.enroll("dev-r")
    link = Uplink(op_nats.url, device="dev-r", credentials=creds, reconnect_wait_s=0.1)
    await link.connect()
    try:
        assert await link.wait_connected(10)
        jwt = op_nats.store.revoke("dev-r", now=int(time.time()))
        with caplog.at_level(logging.ERROR, logger="edge_agent.uplink.client"):
            assert await push_account(op_nats.url, op_nats.store.system_creds, jwt) == (
                "jwt updated"
            )
            await apoll(lambda: not link.connected, 5, "the server to drop the revoked device")
            await apoll(lambda: link.auth_error, 5, "the uplink to report the refusal")
        assert f"refused device dev-r's credentials {creds}" in str(link.auth_error)
        assert "not retrying" in caplog.text
        with pytest.raises(CloudUnavailable) as info:
            await link.complete(infer_request("hi"), timeout=2)
        assert info.value.reason == "auth_refused"
        attempts = link.link.failures
        await asyncio.sleep(0.5)  # five reconnect periods: it stays down and does not retry
        assert not link.connected and link.link.failures == attempts
        assert "Authorization Violation" in await refused_login(op_nats.url, creds)
    finally:
        await link.close()


def test_hubctl_enroll_then_revoke_locks_the_device_out(op_nats: OperatorNats) -> None:
    runner = CliRunner()
    auth = str(op_nats.store.root)
    out = op_nats.creds_dir
    enrolled = runner.invoke(
        hubctl,
        [
            "devices",
            "enroll",
            "dev-c",
            "--dir",
            auth,
            "--site",
            "berlin",
            "--label",
            "line=3",
            "--out",
            str(out),
            "--nats-url",
            op_nats.url,
        ],
    )
    assert enrolled.exit_code == 0, enrolled.output
    creds = out / "dev-c.creds"
    assert f"enrolled dev-c: credentials in {creds} (mode 0600)" in enrolled.output
    assert creds.stat().st_mode & 0o777 == 0o600
    assert asyncio.run(refused_login(op_nats.url, creds)) == "connected"
    revoked = runner.invoke(
        hubctl, ["devices", "revoke", "dev-c", "--dir", auth, "--nats-url", op_nats.url]
    )
    assert revoked.exit_code == 0, revoked.output
    assert "revoked dev-c: the server says 'jwt updated'" in revoked.output
    assert "Authorization Violation" in asyncio.run(refused_login(op_nats.url, creds))
    listed = runner.invoke(
        hubctl, ["devices", "show", "dev-c", "--json", "--dir", auth, "--nats-url", op_nats.url]
    )
    assert listed.exit_code == 0, listed.output
    assert '"revoked_at"' in listed.output and '"site": "berlin"' in listed.output
