"""Admission: accept or refuse one incoming request (pure: no NATS, no asyncio).

The service hands over what it knows (the subject, the raw bytes, its limits and state)
and gets back an :class:`Accepted` request or a :class:`Refused` answer to send::

    verdict = admit(subject, data, limit=1 << 20, kinds={"glm": frozenset({"chat"})},
                    in_flight=set(), draining=False, slot_free=True, concurrency=8)
    if isinstance(verdict, Refused): ...  # reply ErrorMessage(code=verdict.code, ...)
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

from shared.protocol import (
    ErrorCode,
    ErrorMessage,
    InferRequest,
    ProtocolError,
    decode_request,
    model_from_subject,
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid request and the name of the back-end that serves it."""

    request: InferRequest
    backend: str


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
    in_flight: Container[str],
    draining: bool,
    slot_free: bool,
    concurrency: int,
) -> Accepted | Refused:
    """Check size, schema, model, kind, id reuse and capacity, in that order.

    ``kinds`` maps each served model to the request kinds its back-end takes; ``limit`` is
    the largest request accepted in bytes; ``concurrency`` only words the ``busy`` message.
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
    model = model_from_subject(subject) or ""
    served = kinds.get(model)
    if served is None or req.model != model:
        return Refused(
            "unknown_model",
            f"this hub does not serve model {req.model!r} on {subject}; "
            f"it serves: {', '.join(sorted(kinds))}",
            req.id,
        )
    if req.kind not in served:
        return Refused(
            "bad_request",
            f"model {model} serves {', '.join(sorted(served))} requests, not {req.kind!r}",
            req.id,
        )
    if req.id in in_flight:
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
    return Accepted(req, model)
