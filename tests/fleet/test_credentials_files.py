"""Credentials files and the auth directory: bad input gets a clear error naming the file."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloud_hub.cli import main as hubctl
from cloud_hub.control import auth
from edge_agent.settings import load_settings
from edge_agent.uplink import Uplink
from shared.errors import AglError
from shared.nats_auth import CredentialsError, decode_jwt, read_creds
from tests.fixtures.nats import TestNats


@pytest.fixture()
def auth_dir(tmp_path: Path) -> Path:
    result = CliRunner().invoke(hubctl, ["auth", "init", "--dir", str(tmp_path / "auth")])
    assert result.exit_code == 0, result.output
    return tmp_path / "auth"


def enroll(auth_dir: Path, device: str, *extra: str) -> Result:
    return CliRunner().invoke(
        hubctl,
        [
            "devices",
            "enroll",
            device,
            "--dir",
            str(auth_dir),
            "--out",
            str(auth_dir.parent),
            "--nats-url",
            "nats://127.0.0.1:1",
            *extra,
        ],
    )


def test_auth_init_writes_secrets_owner_only_and_prints_no_seed(auth_dir: Path) -> None:
    for name in ("operator.nk", "account.nk", "system.nk", "hub.creds", "system.creds"):
        assert stat.S_IMODE((auth_dir / name).stat().st_mode) == 0o600, name
    include = (auth_dir / "nats-auth.conf").read_text()
    assert "resolver: { type: full" in include and "system_account:" in include
    account = decode_jwt((auth_dir / "account.jwt").read_text().strip())
    assert account["nats"]["limits"]["mem_storage"] == -1  # JetStream on, as the server reads it
    hub = read_creds(auth_dir / "hub.creds")
    assert hub.name == "hub" and hub.allows_publish("agl.v1.dev.any-device.cmd")
    again = CliRunner().invoke(hubctl, ["auth", "init", "--dir", str(auth_dir)])
    assert again.exit_code == 1 and "already holds operator keys" in again.output


def test_enroll_writes_device_scoped_creds_and_says_how_to_use_them(auth_dir: Path) -> None:
    result = enroll(auth_dir, "dev-1", "--site", "berlin", "--label", "line=3")
    assert result.exit_code == 0, result.output
    creds = auth_dir.parent / "dev-1.creds"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert "SU" not in result.output  # no seed on the terminal
    assert "not recorded in the registry" in result.output  # NATS is not there: a warning only
    found = read_creds(creds)
    assert found.pub_allow == auth.device_permissions("dev-1").pub
    assert found.sub_allow == (
        "_INBOX.dev-1.>",
        "agl.v1.dev.dev-1.cmd",
        # a leaf linked with these creds: the hub's pulls and acks of the device's batch lines
        "$JS.*.API.CONSUMER.MSG.NEXT.AGL_BATCH_dev-1.hub",
        "$JS.ACK.AGL_BATCH_dev-1.hub.>",
    )
    assert found.allows_publish("agl.v1.dev.dev-1.infer.glm-4-plus")
    assert not found.allows_publish("agl.v1.dev.dev-2.infer.glm-4-plus")
    twice = enroll(auth_dir, "dev-1")
    assert twice.exit_code == 1 and "already enrolled" in twice.output


@pytest.mark.parametrize("bad", ["dev.1", "dev 1", "a" * 65, "dev*", "日本"])
def test_enroll_refuses_a_device_id_that_is_not_token_safe(auth_dir: Path, bad: str) -> None:
    result = enroll(auth_dir, bad)
    assert result.exit_code == 1 and "is not valid; use 1-64 letters" in result.output
    assert not list(auth_dir.parent.glob("*.creds"))


def test_enroll_refuses_a_malformed_label(auth_dir: Path) -> None:
    result = enroll(auth_dir, "dev-1", "--label", "nolabel")
    assert result.exit_code == 2 and "write labels as key=value" in result.output


def test_devices_commands_need_an_initialised_dir(tmp_path: Path) -> None:
    result = enroll(tmp_path / "empty", "dev-1")
    assert result.exit_code == 1 and "run `hubctl auth init --dir" in result.output


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "has no user JWT block"),
        (
            "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n",
            "no user nkey seed",
        ),
        (
            "-----BEGIN NATS USER JWT-----\nabc.def\n------END NATS USER JWT------\n"
            "-----BEGIN USER NKEY SEED-----\nSUAFOO\n------END USER NKEY SEED------\n",
            "its JWT is broken",
        ),
        (
            "-----BEGIN NATS USER JWT-----\na.b.c\n------END NATS USER JWT------\n"
            "-----BEGIN USER NKEY SEED-----\nSAAFOO\n------END USER NKEY SEED------\n",
            "not a user seed",
        ),
    ],
)
def test_a_malformed_creds_file_is_a_clear_error_naming_the_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    bad = tmp_path / "broken.creds"
    bad.write_text(text)
    with pytest.raises(CredentialsError, match=problem) as info:
        Uplink("nats://127.0.0.1:4222", device="dev-1", credentials=bad)
    assert str(bad) in str(info.value)
    with pytest.raises(AglError) as config:  # at startup, before anything connects
        load_settings(None, device_id="dev-1", hub={"credentials": str(bad)})
    assert str(bad) in str(config.value) and problem in str(config.value)


def test_a_missing_creds_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(AglError, match=r"cannot read the NATS credentials file .*nope\.creds"):
        load_settings(None, hub={"credentials": str(tmp_path / "nope.creds")})


def test_credentials_of_another_device_are_refused_at_startup(auth_dir: Path) -> None:
    assert enroll(auth_dir, "dev-1").exit_code == 0
    creds = auth_dir.parent / "dev-1.creds"
    with pytest.raises(AglError) as info:
        load_settings(None, device_id="dev-2", hub={"credentials": str(creds)})
    assert "belong to 'dev-1'" in str(info.value) and "device_id 'dev-2'" in str(info.value)
    assert load_settings(None, device_id="dev-1", hub={"credentials": str(creds)}).hub.credentials


async def test_without_credentials_the_agent_works_on_an_open_server_and_warns_once(
    nats_server: TestNats, caplog: pytest.LogCaptureFixture
) -> None:
    link = Uplink(nats_server.url, device="dev-open", reconnect_wait_s=0.05)
    with caplog.at_level(logging.WARNING, logger="edge_agent.uplink.client"):
        await link.connect()
        await link.connect()  # connecting again (or reconnecting) does not repeat it
        try:
            assert await link.wait_connected(5)
        finally:
            await link.close()
    warnings = [r.getMessage() for r in caplog.records if "no hub.credentials" in r.getMessage()]
    assert len(warnings) == 1
    assert "dev mode: any client on that server can claim to be device dev-open" in warnings[0]
