"""Admission: accept or refuse one incoming request (pure: no NATS, no asyncio).

The service hands over what it knows (the subject, the raw bytes, its limits and state)
and gets back an :class:`Accepted` request or a :class:`Refused` answer to send::

    if not reply_allowed(subject, reply): ...   # drop it: never answer into another inbox
    verdict = admit(subject, data, limit=1 << 20, kinds={"glm": frozenset({"chat"})},
                    in_flight=set(), draining=False, slot_free=True, concurrency=8)
    if isinstance(verdict, Refused): ...  # reply ErrorMessage(code=verdict.code, ...)

The device is the subject's (``agl.v1.dev.<device>.infer.<model>``), which the server's
permissions enforce; a body whose ``device`` differs is refused.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from shared.protocol import (
    ErrorCode,
    ErrorMessage,
    InferRequest,
    ProtocolError,
    decode_request,
)
from shared.subjects import hub_infer_wildcard, parse_subject, reply_belongs_to


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid request, the device that sent it and the name of the back-end that serves it."""

    request: InferRequest
    backend: str
    device: str

    @property
    def key(self) -> tuple[str, str]:
        """The request's key among those in flight: (device, request id)."""
        return self.device, self.request.id


def endpoints(models: Iterable[str], answer_unknown: bool) -> list[tuple[str, str]]:
    """(endpoint name, subject) per served model, plus ``any-model`` when ``answer_unknown``.

    Each subject takes the model from every device (``agl.v1.dev.*.infer.<model>``).
    """
    found = [(re.sub(r"[^A-Za-z0-9_-]", "_", m), hub_infer_wildcard(m)) for m in models]
    if answer_unknown:
        # Same queue group: a request for a known model may land here and is served too.
        found.append(("any-model", hub_infer_wildcard()))
    return found


def reply_allowed(subject: str, reply: str) -> bool:
    """Whether ``reply`` lies in the inbox of the device that ``subject`` belongs to.

    The server does not check reply subjects against permissions, so without this a device
    could have the hub answer (and probe) into another device's inbox.
    """
    parsed = parse_subject(subject)
    return parsed is not None and reply_belongs_to(parsed.device, reply)


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a request is refused; ``request_id`` is ``None`` when it could not be read."""

    code: ErrorCode
    message: str
    request_id: str | None

    def reply(self) -> ErrorMessage:
        """The wire message that tells the sender."""
        return ErrorMessage(id=self.request_id, code=self.code, message=self.message)


def admit(
    subject: str,
    data: bytes,
    *,
    limit: int,
    kinds: Mapping[str, frozenset[str]],
    in_flight: Container[tuple[str, str]],
    draining: bool,
    slot_free: bool,
    concurrency: int,
) -> Accepted | Refused:
    """Check size, schema, model, device, kind, id reuse and capacity, in that order.

    ``in_flight`` holds (device, request id) keys; ``kinds`` maps each served model to the
    request kinds its back-end takes; ``limit`` is the largest request accepted in bytes;
    ``concurrency`` only words the ``busy`` message.
    """
    if len(data) > limit:
        return Refused(
            "too_large",
            f"request is {len(data)} bytes; this hub accepts at most {limit}; shorten the prompt",
            None,
        )
    try:
        req = decode_request(data)
    except ProtocolError as exc:
        return Refused("bad_request", str(exc), None)
    parsed = parse_subject(subject)
    device = parsed.device if parsed is not None else ""
    model = parsed.arg if parsed is not None and parsed.verb == "infer" else ""
    served = kinds.get(model)
    if served is None or req.model != model:
        return Refused(
            "unknown_model",
            f"this hub does not serve model {req.model!r} on {subject}; "
            f"it serves: {', '.join(sorted(kinds))}",
            req.id,
        )
    if req.device != device:
        return Refused(
            "bad_request",
            f"the body says device {req.device!r} but it came on device {device!r}'s subject "
            f"{subject}; the subject names the device, so set `device` to {device!r}",
            req.id,
        )
    if req.kind not in served:
        return Refused(
            "bad_request",
            f"model {model} serves {', '.join(sorted(served))} requests, not {req.kind!r}",
            req.id,
        )
    if (device, req.id) in in_flight:
        return Refused(
            "bad_request",
            f"request id {req.id} is already in flight; use a fresh id per request",
            req.id,
        )
    if draining:
        return Refused(
            "shutting_down",
            "hub worker is draining requests; retry on another worker or answer locally",
            req.id,
        )
    if not slot_free:
        return Refused(
            "busy",
            f"hub worker is at its limit of {concurrency} requests; "
            "retry on another worker or answer locally",
            req.id,
        )
    return Accepted(req, model, device)
