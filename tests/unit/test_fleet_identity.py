"""Pure fleet-identity code: subjects, JWT signing, creds, liveness, rate limit, heartbeats."""

from __future__ import annotations

import base64
from pathlib import Path

import nkeys
import pytest

from cloud_hub.control import auth
from cloud_hub.control.fleet import DeviceEntry, RateLimit, fleet_summary, liveness
from shared.heartbeat import MAX_HEARTBEAT_BYTES, Heartbeat, decode_heartbeat, encode_heartbeat
from shared.nats_auth import decode_jwt, denied_subject, read_creds
from shared.subjects import (
    DeviceSubject,
    InvalidSubjectToken,
    ProtocolError,
    check_device_id,
    parse_subject,
    reply_belongs_to,
)


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_a_signed_jwt_verifies_with_the_issuers_public_key() -> None:
    acct, user = auth.new_key("account"), auth.new_key("user")
    claims = auth.user_claims(
        user.public, name="dev-1", permissions=auth.device_permissions("dev-1"), now=1700000000
    )
    token = auth.sign_jwt(claims, acct)
    head, body, sig = token.split(".")
    verifier = nkeys.from_seed(bytearray(acct.seed))
    assert verifier.verify(f"{head}.{body}".encode(), _unb64(sig))
    decoded = decode_jwt(token)
    assert (decoded["iss"], decoded["sub"], decoded["name"]) == (acct.public, user.public, "dev-1")
    assert decoded["nats"]["type"] == "user" and decoded["nats"]["version"] == 2
    assert decoded["nats"]["pub"]["allow"][0] == "agl.v1.dev.dev-1.>"
    assert len(decoded["jti"]) == 52  # base32 of a sha256, unpadded


def test_keys_have_the_nats_prefixes_and_never_show_their_seed() -> None:
    assert auth.new_key("operator").public.startswith("O")
    assert auth.new_key("account").public.startswith("A")
    user = auth.new_key("user")
    assert user.public.startswith("U") and user.seed.startswith(b"SU")
    assert user.seed.decode() not in repr(user)
    with pytest.raises(ValueError, match="not an nkey seed"):
        auth.key_from_seed(b"SUnonsense")


def test_revoking_adds_the_user_and_makes_a_newer_account_jwt() -> None:
    claims = auth.account_claims("AXYZ", name="AGL", now=100, jetstream=True)
    assert claims["nats"]["limits"]["disk_storage"] == -1
    revoked = auth.revoke(claims, "UABC", at=100)
    assert revoked["nats"]["revocations"] == {"UABC": 100}
    assert revoked["iat"] == 101  # strictly newer, so the resolver takes it
    again = auth.revoke(revoked, "UDEF", at=500)
    assert again["nats"]["revocations"] == {"UABC": 100, "UDEF": 500}
    assert "revocations" not in claims["nats"]  # the input is not changed


def test_creds_text_reads_back(tmp_path: Path) -> None:
    acct, user = auth.new_key("account"), auth.new_key("user")
    jwt = auth.sign_jwt(
        auth.user_claims(user.public, name="d", permissions=auth.device_permissions("d"), now=1),
        acct,
    )
    path = tmp_path / "d.creds"
    path.write_text(auth.creds_text(jwt, user.seed))
    creds = read_creds(path)
    assert (creds.name, creds.user) == ("d", user.public)
    assert creds.allows_publish("$KV.agl_devices.d")
    assert not creds.allows_publish("$KV.agl_devices.e")
    assert not creds.allows_publish("agl.v1.dev.d")  # `>` needs at least one more token


def test_server_config_names_operator_system_account_and_full_resolver() -> None:
    text = auth.server_config(
        operator_jwt="a.b.c", system_account="ASYS", resolver_dir="/r", preload={"AX": "x.y.z"}
    )
    assert 'operator: "a.b.c"' in text and "system_account: ASYS" in text
    assert 'resolver: { type: full, dir: "/r"' in text and 'AX: "x.y.z"' in text


@pytest.mark.parametrize(
    ("subject", "parsed"),
    [
        ("agl.v1.dev.d-1.infer.glm", DeviceSubject("d-1", "infer", "glm")),
        ("agl.v1.dev.d_1.hb", DeviceSubject("d_1", "hb", "")),
        ("agl.v1.dev.d.cancel.r1", DeviceSubject("d", "cancel", "r1")),
        ("agl.v1.dev.d", None),
        ("agl.v1.dev.d.x.y.z", None),
        ("agl.v1.dev.*.hb", None),
        ("agl.v1.infer.glm", None),
    ],
)
def test_device_subjects_parse(subject: str, parsed: DeviceSubject | None) -> None:
    assert parse_subject(subject) == parsed


def test_device_ids_are_token_safe_and_bounded() -> None:
    assert check_device_id("a" * 64) == "a" * 64
    for bad in ("", "a" * 65, "a.b", "a b", "a*", "a>", "ü"):
        with pytest.raises(InvalidSubjectToken):
            check_device_id(bad)
    assert reply_belongs_to("d1", "_INBOX.d1.x") and not reply_belongs_to("d1", "_INBOX.d10.x")


def test_nats_py_permission_errors_are_read_back() -> None:
    err = Exception('nats: permissions violation for publish to "agl.v1.dev.b.hb"')
    assert denied_subject(err) == ("publish", "agl.v1.dev.b.hb")
    assert denied_subject(Exception("nats: stale connection")) is None


def beat(interval: float = 10.0) -> Heartbeat:
    return Heartbeat(agent_version="1", interval_s=interval, uptime_s=1)


@pytest.mark.parametrize(
    ("age_s", "state"),
    [(0, "online"), (29.9, "online"), (30, "stale"), (99.9, "stale"), (100, "offline")],
)
def test_liveness_counts_missed_beats(age_s: float, state: str) -> None:
    entry = DeviceEntry(device="d", last_seen=1000.0, heartbeat=beat())
    assert liveness(entry, now=1000.0 + age_s) == state
    assert liveness(DeviceEntry(device="d"), now=0) == "never_seen"


def test_fleet_summary_sums_the_latest_heartbeats() -> None:
    a = beat().model_copy(
        update={
            "requests_by_reason": {"default": 8, "policy": 2},
            "escalations_by_reason": {"policy": 2},
            "tokens_by_tier": {"edge": 100, "cloud": 40},
        }
    )
    b = beat().model_copy(
        update={"requests_by_reason": {"policy": 2}, "escalations_by_reason": {"policy": 1}}
    )
    entries = [
        DeviceEntry(device="a", last_seen=0, heartbeat=a),
        DeviceEntry(device="b", last_seen=-50, heartbeat=b),
        DeviceEntry(device="c"),
    ]
    summary = fleet_summary(entries, now=1)
    assert summary["devices"] == {
        "total": 3,
        "online": 1,
        "stale": 1,
        "offline": 0,
        "never_seen": 1,
    }
    assert summary["requests"] == {"total": 12, "by_reason": {"default": 8, "policy": 4}}
    assert summary["escalations"]["total"] == 3 and summary["escalations"]["share"] == 0.25
    assert summary["escalations"]["by_reason"]["policy"] == {"count": 3, "share": 0.75}
    assert summary["tokens"]["by_tier"] == {"cloud": 40, "edge": 100}


def test_rate_limit_allows_a_burst_then_one_per_interval_per_device() -> None:
    limit = RateLimit(burst=2, every_s=1.0, max_devices=2)
    assert [limit.allow("a", now=0) for _ in range(3)] == [True, True, False]
    assert limit.allow("b", now=0)  # another device has its own bucket
    assert not limit.allow("a", now=0.5) and limit.allow("a", now=1.6)
    limit.allow("c", now=2)  # a third device evicts the least recently used bucket
    assert len(limit._buckets) == 2


def test_heartbeats_round_trip_ignore_unknown_fields_and_refuse_bad_ones() -> None:
    b = beat()
    assert decode_heartbeat(encode_heartbeat(b)) == b
    newer = encode_heartbeat(b)[:-1] + b',"gpu_temp_c":61}'
    assert decode_heartbeat(newer) == b
    with pytest.raises(ProtocolError, match="interval_s"):
        decode_heartbeat(b'{"v":1,"agent_version":"1","interval_s":0,"uptime_s":1}')
    with pytest.raises(ProtocolError, match="v: Input should be 1"):
        decode_heartbeat(b'{"v":2,"agent_version":"1","interval_s":1,"uptime_s":1}')
    with pytest.raises(ProtocolError, match="at most 65536"):
        decode_heartbeat(b" " * (MAX_HEARTBEAT_BYTES + 1))
