"""Reply framing: back-end events → protocol messages → the request's reply subject.

A non-streaming request gets one :class:`~shared.protocol.ResultMessage`
(:func:`result_message`, sent with :func:`send_result`); a streaming one gets chunks and an
end message from a :class:`StreamFramer`. Failures go out through :func:`send_error` as a
``nats.micro`` error reply (``Nats-Service-Error`` headers) whose body is the JSON
:class:`~shared.protocol.ErrorMessage` that the edge reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nats.micro.request import Request
from nats.micro.service import Service
from prometheus_client import CollectorRegistry, Counter

from cloud_hub.serving.admission import reply_allowed
from shared.protocol import (
    ChunkMessage,
    ClassifyResult,
    EndMessage,
    ErrorCode,
    ErrorMessage,
    InferRequest,
    ResultMessage,
    Usage,
    encode,
    wire_logprobs,
)
from shared.runtimes.types import GenerationEnd, TokenPiece

log = logging.getLogger(__name__)

#: ``Nats-Service-Error-Code`` per error code (HTTP-style, as NATS tooling expects).
STATUS: dict[ErrorCode, str] = {
    "bad_request": "400",
    "unknown_model": "404",
    "too_large": "413",
    "cancelled": "499",
    "internal": "500",
    "backend_error": "502",
    "busy": "503",
    "shutting_down": "503",
    "timeout": "504",
}
#: Headers travel in the payload too: the description header is cut to this many characters.
MAX_DESCRIPTION = 256


class ErrorStats:
    """Counts error replies in one endpoint's ``$SRV.STATS`` (``num_errors``, ``last_error``).

    nats-py's ``Request.respond_error`` only sets the error headers (Go's micro counts such
    replies), and its endpoints count only handler exceptions, while most of our errors are
    sent from a request task after the handler returned. So this bumps nats-py's (private)
    endpoint counters; ``tests/hub/test_replies.py`` fails if they move.
    """

    def __init__(self, service: Service, endpoint: str) -> None:
        self._service = service
        self._endpoint = endpoint

    def record(self, description: str) -> None:
        """Count one error reply on the endpoint (a no-op once the service stopped)."""
        for endpoint in self._service._endpoints:
            if endpoint._name == self._endpoint:
                endpoint._num_errors += 1
                endpoint._last_error = description


def reply_subject(request: Request) -> str:
    """The subject the answer goes to ("" if none); ``nats.micro`` keeps it on the raw message."""
    msg = getattr(request, "_msg", None)
    return str(getattr(msg, "reply", "") or "")


class ReplyGuard:
    """Answers only into the sender's own inbox, and counts what it drops.

    A reply subject outside ``_INBOX.<device from the subject>.`` is dropped unanswered (the
    server does not check reply subjects, so answering would write into another device's inbox)
    and counted in ``agl_hub_spoofed_replies_total``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.spoofed = Counter(
            "agl_hub_spoofed_replies",
            "Requests dropped because their reply subject was not the sending device's inbox",
            registry=registry,
        )

    def allows(self, request: Request) -> bool:
        """Whether ``request`` has a reply subject in its sender's own inbox (else: logged)."""
        reply = reply_subject(request)
        if not reply:
            log.warning("a request on %s has no reply subject; ignored", request.subject)
            return False
        if not reply_allowed(request.subject, reply):
            self.spoofed.inc()
            log.warning(
                "dropped a request on %s: its reply subject %s is not that device's inbox",
                request.subject,
                reply[:80],
            )
            return False
        return True


def usage(end: GenerationEnd) -> Usage:
    """The wire usage of a finished generation."""
    return Usage(prompt_tokens=end.prompt_tokens, completion_tokens=end.completion_tokens)


def piece(event: str | TokenPiece) -> TokenPiece:
    """A back-end's text event as a piece (plain text is no token: ``token_id=-1``)."""
    return TokenPiece(text=event, token_id=-1) if isinstance(event, str) else event


def result_message(
    req: InferRequest, pieces: Sequence[TokenPiece], end: GenerationEnd
) -> ResultMessage:
    """The whole answer: the pieces' text and logprobs, the end's usage and classifications."""
    classifications = None
    if end.classifications is not None:
        classifications = [
            ClassifyResult(label=c.label, confidence=c.confidence, probabilities=c.probabilities)
            for c in end.classifications
        ]
    return ResultMessage(
        id=req.id,
        model=req.model,
        text="".join(p.text for p in pieces),
        finish_reason=end.finish_reason,
        usage=usage(end),
        classifications=classifications,
        logprobs=wire_logprobs(pieces),
    )


class StreamFramer:
    """Numbers a stream's chunks from 0 and closes it with an :class:`EndMessage`.

    A token whose text is still held back (an empty piece with a logprob) waits for the
    next piece with text, so every chunk has text and every token's logprob travels.

    framer = StreamFramer("r1")
    framer.feed("Hi")                      # -> ChunkMessage(seq=0, text="Hi")
    framer.end(GenerationEnd("stop", 3, 1))  # -> [EndMessage(seq=1, ...)]
    """

    def __init__(self, request_id: str) -> None:
        self._id = request_id
        self._seq = 0
        self._held: list[TokenPiece] = []

    @property
    def sent(self) -> int:
        """Chunks framed so far."""
        return self._seq

    def feed(self, event: str | TokenPiece) -> ChunkMessage | None:
        """The chunk to send for this event, or ``None`` while it is held or empty."""
        p = piece(event)
        if not p.text and p.logprob is None:
            return None
        self._held.append(p)
        return self._chunk() if p.text else None

    def feed_many(self, events: Sequence[str | TokenPiece]) -> ChunkMessage | None:
        """One chunk for several events (coalesced tokens), or ``None`` while all are held."""
        for event in events:
            p = piece(event)
            if p.text or p.logprob is not None:
                self._held.append(p)
        return self._chunk() if any(p.text for p in self._held) else None

    def end(self, end: GenerationEnd) -> list[ChunkMessage | EndMessage]:
        """The messages that close the stream: held pieces (if any), then the end message."""
        out: list[ChunkMessage | EndMessage] = [self._chunk()] if self._held else []
        out.append(
            EndMessage(
                id=self._id, seq=self._seq, finish_reason=end.finish_reason, usage=usage(end)
            )
        )
        return out

    def _chunk(self) -> ChunkMessage:
        held, self._held = self._held, []
        msg = ChunkMessage(
            id=self._id,
            seq=self._seq,
            text="".join(p.text for p in held),
            logprobs=wire_logprobs(held),
        )
        self._seq += 1
        return msg


async def send(request: Request, msg: ResultMessage | ChunkMessage | EndMessage) -> None:
    """Reply with ``msg``; a request published without a reply subject is answered by nobody."""
    try:
        await request.respond(encode(msg))
    except ValueError:
        log.debug("request on %s has no reply subject; dropped %s", request.subject, msg.type)


async def send_error(request: Request, msg: ErrorMessage, *, stats: ErrorStats | None) -> None:
    """Reply with a ``nats.micro`` error whose body is ``msg``; count it in ``stats``."""
    description = " ".join(msg.message.split())[:MAX_DESCRIPTION]
    if stats is not None:
        stats.record(f"{msg.code}: {description}")
    try:
        await request.respond_error(STATUS[msg.code], description, data=encode(msg))
    except ValueError:
        log.debug("request on %s has no reply subject; dropped %s", request.subject, msg.code)


async def send_result(
    request: Request, msg: ResultMessage, *, max_payload: int, stats: ErrorStats | None
) -> None:
    """Reply with ``msg``, or with a ``too_large`` error if it exceeds ``max_payload``."""
    data = encode(msg)
    if len(data) <= max_payload:
        try:
            await request.respond(data)
        except ValueError:
            log.debug("request on %s has no reply subject; dropped the result", request.subject)
        return
    error = ErrorMessage(
        id=msg.id,
        code="too_large",
        message=f"the answer is {len(data)} bytes, over the server's max_payload "
        f"({max_payload}); request it with stream=true",
    )
    await send_error(request, error, stats=stats)
