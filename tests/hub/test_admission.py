"""Admission decides from pure inputs: every refusal path, without NATS."""

from __future__ import annotations

from typing import Any

import pytest

from cloud_hub.serving.admission import Accepted, Refused, admit, endpoints, reply_allowed
from shared.protocol import InferRequest, encode
from shared.subjects import infer_subject
from tests.fixtures.hubs import infer_request
from tests.fixtures.names import DEVICE, ECHO

KINDS = {ECHO: frozenset({"chat", "completion"}), "digits": frozenset({"classify"})}
SUBJECT = infer_subject(DEVICE, ECHO)


def decide(data: bytes, subject: str = SUBJECT, **state: Any) -> Accepted | Refused:
    args: dict[str, Any] = {
        "limit": 4096,
        "kinds": KINDS,
        "in_flight": set(),
        "draining": False,
        "slot_free": True,
        "concurrency": 8,
    }
    args.update(state)
    return admit(subject, data, **args)


def refused(verdict: Accepted | Refused) -> Refused:
    assert isinstance(verdict, Refused), verdict
    return verdict


def test_a_valid_request_is_accepted_with_its_backend() -> None:
    req = infer_request("hi")
    verdict = decide(encode(req))
    assert verdict == Accepted(req, ECHO, DEVICE)
    assert isinstance(verdict, Accepted) and verdict.key == (DEVICE, req.id)


def test_oversize_request_is_too_large_before_it_is_parsed() -> None:
    r = refused(decide(b"x" * 5000))
    assert (r.code, r.request_id) == ("too_large", None)
    assert "5000 bytes" in r.message and "at most 4096" in r.message


def test_unparsable_request_is_a_bad_request_without_id() -> None:
    r = refused(decide(b"{not json"))
    assert (r.code, r.request_id) == ("bad_request", None)
    assert "not valid JSON" in r.message


def test_model_not_served_is_unknown_model_naming_the_served_ones() -> None:
    r = refused(
        decide(encode(infer_request("hi", model="nope")), subject=infer_subject(DEVICE, "nope"))
    )
    assert r.code == "unknown_model" and r.request_id is not None
    assert "'nope'" in r.message and f"digits, {ECHO}" in r.message


def test_body_model_differing_from_the_subject_is_unknown_model() -> None:
    r = refused(decide(encode(infer_request("hi", model="digits"))))
    assert r.code == "unknown_model" and SUBJECT in r.message


def test_kind_the_backend_does_not_serve_is_a_bad_request() -> None:
    req = InferRequest(id="k1", device=DEVICE, model="digits", kind="completion", prompt="x")
    r = refused(decide(encode(req), subject=infer_subject(DEVICE, "digits")))
    assert (r.code, r.request_id) == ("bad_request", "k1")
    assert r.message == "model digits serves classify requests, not 'completion'"


def test_reused_in_flight_id_is_a_bad_request() -> None:
    req = infer_request("hi")
    r = refused(decide(encode(req), in_flight={(DEVICE, req.id)}))
    assert r.code == "bad_request" and "already in flight" in r.message


def test_the_same_id_from_another_device_is_not_in_flight() -> None:
    req = infer_request("hi")
    assert isinstance(decide(encode(req), in_flight={("other-dev", req.id)}), Accepted)


def test_a_forged_body_device_is_refused_naming_the_subjects_device() -> None:
    forged = infer_request("hi").model_copy(update={"device": "victim"})
    r = refused(decide(encode(forged)))
    assert (r.code, r.request_id) == ("bad_request", forged.id)
    assert "'victim'" in r.message and f"set `device` to '{DEVICE}'" in r.message


@pytest.mark.parametrize(
    ("reply", "allowed"),
    [
        (f"_INBOX.{DEVICE}.abc.1", True),
        ("_INBOX.other-dev.abc.1", False),
        (f"_INBOX.{DEVICE}", False),
        (f"_INBOX.{DEVICE}x.abc", False),
        ("_INBOX.abc.1", False),
    ],
)
def test_only_the_sending_devices_inbox_may_be_the_reply_subject(reply: str, allowed: bool) -> None:
    assert reply_allowed(SUBJECT, reply) is allowed
    assert reply_allowed("not.a.device.subject", reply) is False


def test_endpoints_take_each_model_from_every_device() -> None:
    assert endpoints(["glm:4@b", ECHO], True) == [
        ("glm_4_b", "agl.v1.dev.*.infer.glm:4@b"),
        (ECHO, f"agl.v1.dev.*.infer.{ECHO}"),
        ("any-model", "agl.v1.dev.*.infer.*"),
    ]


def test_draining_worker_says_shutting_down() -> None:
    r = refused(decide(encode(infer_request("hi")), draining=True, slot_free=False))
    assert r.code == "shutting_down"
    assert r.message.startswith("hub worker is draining requests; retry on another worker")


def test_full_worker_says_busy_with_its_limit() -> None:
    r = refused(decide(encode(infer_request("hi")), slot_free=False, concurrency=3))
    assert r.code == "busy" and "at its limit of 3 requests" in r.message


@pytest.mark.parametrize(
    "subject", [f"agl.v1.dev.{DEVICE}.cancel.x", "agl.v1.infer.glm-4-plus", "other.subject"]
)
def test_subject_that_is_no_infer_subject_is_unknown_model(subject: str) -> None:
    assert refused(decide(encode(infer_request("hi")), subject=subject)).code == "unknown_model"


def test_refusal_becomes_an_error_message() -> None:
    msg = Refused("busy", "full", "r9").reply()
    assert (msg.type, msg.id, msg.code, msg.message) == ("error", "r9", "busy", "full")
