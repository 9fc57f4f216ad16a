"""Admission decides from pure inputs: every refusal path, without NATS."""

from __future__ import annotations

from typing import Any

import pytest

from cloud_hub.serving.admission import Accepted, Refused, admit
from shared.protocol import InferRequest, encode
from tests.hub.conftest import ECHO, chat

KINDS = {ECHO: frozenset({"chat", "completion"}), "digits": frozenset({"classify"})}
SUBJECT = f"agl.v1.infer.{ECHO}"


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
    req = chat("hi")
    verdict = decide(encode(req))
    assert verdict == Accepted(req, ECHO)


def test_oversize_request_is_too_large_before_it_is_parsed() -> None:
    r = refused(decide(b"x" * 5000))
    assert (r.code, r.request_id) == ("too_large", None)
    assert "5000 bytes" in r.message and "at most 4096" in r.message


def test_unparsable_request_is_a_bad_request_without_id() -> None:
    r = refused(decide(b"{not json"))
    assert (r.code, r.request_id) == ("bad_request", None)
    assert "not valid JSON" in r.message


def test_model_not_served_is_unknown_model_naming_the_served_ones() -> None:
    r = refused(decide(encode(chat("hi", model="nope")), subject="agl.v1.infer.nope"))
    assert r.code == "unknown_model" and r.request_id is not None
    assert "'nope'" in r.message and f"digits, {ECHO}" in r.message


def test_body_model_differing_from_the_subject_is_unknown_model() -> None:
    r = refused(decide(encode(chat("hi", model="digits"))))
    assert r.code == "unknown_model" and SUBJECT in r.message


def test_kind_the_backend_does_not_serve_is_a_bad_request() -> None:
    req = InferRequest(id="k1", device="d", model="digits", kind="completion", prompt="x")
    r = refused(decide(encode(req), subject="agl.v1.infer.digits"))
    assert (r.code, r.request_id) == ("bad_request", "k1")
    assert r.message == "model digits serves classify requests, not 'completion'"


def test_reused_in_flight_id_is_a_bad_request() -> None:
    req = chat("hi")
    r = refused(decide(encode(req), in_flight={req.id}))
    assert r.code == "bad_request" and "already in flight" in r.message


def test_draining_worker_says_shutting_down() -> None:
    r = refused(decide(encode(chat("hi")), draining=True, slot_free=False))
    assert r.code == "shutting_down"
    assert r.message.startswith("hub worker is draining requests; retry on another worker")


def test_full_worker_says_busy_with_its_limit() -> None:
    r = refused(decide(encode(chat("hi")), slot_free=False, concurrency=3))
    assert r.code == "busy" and "at its limit of 3 requests" in r.message


@pytest.mark.parametrize("subject", ["agl.v1.cancel.x", "other.subject"])
def test_subject_that_is_no_infer_subject_is_unknown_model(subject: str) -> None:
    assert refused(decide(encode(chat("hi")), subject=subject)).code == "unknown_model"


def test_refusal_becomes_an_error_message() -> None:
    msg = Refused("busy", "full", "r9").reply()
    assert (msg.type, msg.id, msg.code, msg.message) == ("error", "r9", "busy", "full")
