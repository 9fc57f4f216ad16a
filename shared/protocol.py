"""The edge ↔ hub wire protocol, version 1 (pure: no sockets, no NATS).

A request travels on ``agl.v1.dev.<device>.infer.<model>`` as JSON (subjects:
:mod:`shared.subjects`; the hub takes the device from the subject, never from the body). The hub answers on the request's
reply subject with one :class:`ResultMessage` (``stream: false``) or with
:class:`ChunkMessage` s numbered from 0 and one terminal :class:`EndMessage` whose ``seq``
follows the last chunk's (``stream: true``). Any failure is one :class:`ErrorMessage`.
Cancelling is a publish (any body) to ``agl.v1.dev.<device>.cancel.<request id>``.
Unknown fields are ignored, so that mixed versions can run during a rollout; the ``v`` field
decides compatibility.

Chunks and results may carry ``logprobs`` (one :class:`WireLogprob` per generated token);
:func:`wire_params`/:func:`sampling_params` and :func:`wire_logprobs`/:func:`token_pieces`
are the only conversions between these wire models and :mod:`shared.runtimes.types`.

    data = encode(InferRequest(id="r1", device="d1", model="glm-4-plus", kind="chat",
                               messages=[ChatTurn(role="user", content="Hi")]))
    request = decode_request(data)

Errors (all :class:`shared.errors.AglError`)::

    ProtocolError            a message is not valid JSON / UTF-8 / schema / version
    ├── PayloadTooLargeError a message is bigger than the allowed size (size, max_payload)
    ├── InvalidSubjectToken  a model name or request id cannot be a NATS subject token
    └── StreamGapError       chunks arrived out of order, or after the end (expected, got)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shared.runtimes.grammar import MAX_SCHEMA_BYTES
from shared.runtimes.types import SamplingParams, TokenPiece, TopLogprob
from shared.subjects import CANCEL_WILDCARD as CANCEL_WILDCARD
from shared.subjects import QUEUE_GROUP as QUEUE_GROUP
from shared.subjects import SUBJECT_PREFIX as SUBJECT_PREFIX
from shared.subjects import InvalidSubjectToken as InvalidSubjectToken
from shared.subjects import ProtocolError as ProtocolError
from shared.subjects import cancel_subject as cancel_subject
from shared.subjects import device_subject
from shared.subjects import infer_subject as infer_subject
from shared.subjects import model_from_subject as model_from_subject
from shared.subjects import probe_subject as probe_subject

PROTOCOL_VERSION = 1
#: The hub answers every device's models request (queue group ``hub``).
MODELS_WILDCARD = f"{SUBJECT_PREFIX}.dev.*.models"


def models_subject(device: str) -> str:
    """Where ``device`` asks the hub for its models: ``agl.v1.dev.<device>.models``.

    The reply is a :class:`shared.capabilities.ModelsReply` (names, capabilities, context)."""
    return device_subject(device, "models")


#: Header names that travel with requests.
TRACEPARENT_HEADER = "traceparent"
#: A hub's interest probe carries this header and no body; edges skip such messages.
PROBE_HEADER = "Agl-Probe"

_TOKEN = re.compile(r"^[A-Za-z0-9_\-:@+=]+$")

ErrorCode = Literal[
    "bad_request",  # the request failed validation; fix the sender
    "too_large",  # request or reply exceeds the size limit
    "unknown_model",  # no back-end on this hub serves that model
    "busy",  # the worker is at its concurrency limit; retry or fall back
    "timeout",  # the hub's own deadline passed
    "cancelled",  # the client asked to stop
    "shutting_down",  # the hub is draining
    "backend_error",  # the model back-end failed
    "internal",  # a bug in the hub
]


class PayloadTooLargeError(ProtocolError):
    """A message is bigger than the limit (the server's ``max_payload`` or the hub's own)."""

    def __init__(self, *, size: int, max_payload: int) -> None:
        super().__init__(
            f"message is {size} bytes but at most {max_payload} are allowed; "
            "shorten the prompt or raise max_payload in the NATS server config"
        )
        self.size = size
        self.max_payload = max_payload


class StreamGapError(ProtocolError):
    """A chunk stream skipped or repeated a sequence number, or continued after its end."""

    def __init__(self, *, expected: int | None, got: int) -> None:
        if expected is None:
            detail = f"message seq {got} arrived after the stream's end message"
        else:
            detail = f"expected chunk seq {expected} but got {got}; the stream lost messages"
        super().__init__(detail)
        self.expected = expected
        self.got = got


def check_payload_size(data: bytes, max_payload: int) -> None:
    """Raise :class:`PayloadTooLargeError` if ``data`` is longer than ``max_payload``."""
    if len(data) > max_payload:
        raise PayloadTooLargeError(size=len(data), max_payload=max_payload)


_Id = Annotated[str, Field(min_length=1, max_length=128, pattern=_TOKEN.pattern)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1


class ChatTurn(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    #: An assistant turn's calls, in OpenAI's shape (``id``, ``type``, ``function``).
    tool_calls: list[dict[str, Any]] | None = None
    #: A ``tool`` turn: the id of the call it answers.
    tool_call_id: str | None = None


class InferParams(BaseModel):
    """Sampling parameters, with the same meaning as OpenAI's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_tokens: int = Field(default=256, ge=1, le=1_000_000)
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=16)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    grammar: str | None = Field(default=None, max_length=MAX_SCHEMA_BYTES)
    """Constrained decoding: ``"json_object"`` or a JSON schema's text (``shared.runtimes.grammar``)."""


class InferRequest(_Message):
    """An inference request from an edge device.

    ``kind="chat"`` needs ``messages``, ``kind="completion"`` needs ``prompt`` and
    ``kind="classify"`` (ONNX back-ends) needs ``features`` (one row of floats per item).
    """

    id: _Id
    device: _Id
    model: _Id
    kind: Literal["chat", "completion", "classify"]
    messages: list[ChatTurn] | None = None
    prompt: str | None = None
    features: list[list[float]] | None = None
    params: InferParams = InferParams()
    stream: bool = False
    #: OpenAI ``function`` objects the model may call (``shared.tool_calls``); chat only.
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    #: ``auto``, ``none``, ``required`` or the name of the function to call.
    tool_choice: str | None = None
    parallel_tool_calls: bool = True

    @model_validator(mode="after")
    def _inputs_match_kind(self) -> InferRequest:
        needed = {"chat": "messages", "completion": "prompt", "classify": "features"}[self.kind]
        if not getattr(self, needed):
            raise ValueError(f"kind {self.kind!r} needs a non-empty `{needed}` field")
        return self


class Usage(BaseModel):
    """Tokens read and written by one request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class ClassifyResult(BaseModel):
    """One classified row (ONNX back-ends)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    label: str
    confidence: float
    probabilities: dict[str, float]


class WireTopLogprob(BaseModel):
    """One candidate token and its log-probability."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    token: str
    logprob: float


class WireLogprob(BaseModel):
    """One generated token: the text it added to the answer and its log-probability.

    ``token`` is the text the token released after UTF-8 reassembly and stop-string
    hold-back (it may be empty), so the ``token`` s of a message join to its ``text``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    token: str
    logprob: float
    top_logprobs: list[WireTopLogprob] = Field(default_factory=list)
    #: The token's own bytes (``TokenPiece.raw``), when known.
    bytes: list[int] | None = Field(default=None, max_length=256)


class ResultMessage(_Message):
    """The whole answer to a non-streaming request."""

    type: Literal["result"] = "result"
    id: str
    model: str
    text: str = ""
    finish_reason: str
    usage: Usage = Usage()
    classifications: list[ClassifyResult] | None = None
    logprobs: list[WireLogprob] | None = None


class ChunkMessage(_Message):
    """One piece of a streamed answer; ``seq`` counts from 0."""

    type: Literal["chunk"] = "chunk"
    id: str
    seq: int = Field(ge=0)
    text: str
    #: One entry per token in this chunk (``None``: not asked for, or no token in it).
    logprobs: list[WireLogprob] | None = None


class EndMessage(_Message):
    """The terminal message of a stream; its ``seq`` follows the last chunk's."""

    type: Literal["end"] = "end"
    id: str
    seq: int = Field(ge=0)
    finish_reason: str
    usage: Usage = Usage()


class ErrorMessage(_Message):
    """A failure; ``code`` is one of :data:`ErrorCode`, ``message`` says what to do."""

    type: Literal["error"] = "error"
    id: str | None = None
    code: ErrorCode
    message: str


Reply = Annotated[
    ResultMessage | ChunkMessage | EndMessage | ErrorMessage, Field(discriminator="type")
]
AnyMessage = InferRequest | ResultMessage | ChunkMessage | EndMessage | ErrorMessage
_REPLY = TypeAdapter[ResultMessage | ChunkMessage | EndMessage | ErrorMessage](Reply)


#: JSON has no -inf: log-probabilities below this are sent as this.
LOGPROB_FLOOR = -9999.0


def _finite(logprob: float) -> float:
    return logprob if logprob >= LOGPROB_FLOOR else LOGPROB_FLOOR  # NaN fails >= too


def wire_params(p: SamplingParams) -> InferParams:
    """The wire form of runtime sampling parameters; :class:`ProtocolError` if out of range."""
    try:
        return InferParams(
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=list(p.stop),
            seed=p.seed,
            logprobs=p.logprobs,
            top_logprobs=p.top_logprobs,
            frequency_penalty=p.frequency_penalty,
            presence_penalty=p.presence_penalty,
            grammar=p.grammar,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ProtocolError(f"sampling parameters cannot be sent to the hub: {problems}") from None


def sampling_params(p: InferParams) -> SamplingParams:
    """The runtime form of wire sampling parameters (the inverse of :func:`wire_params`)."""
    return SamplingParams(
        max_tokens=p.max_tokens,
        temperature=p.temperature,
        top_p=p.top_p,
        stop=tuple(p.stop),
        seed=p.seed,
        logprobs=p.logprobs,
        top_logprobs=p.top_logprobs,
        frequency_penalty=p.frequency_penalty,
        presence_penalty=p.presence_penalty,
        grammar=p.grammar,
    )


def wire_logprobs(pieces: Sequence[TokenPiece]) -> list[WireLogprob] | None:
    """One :class:`WireLogprob` per piece that has a logprob; ``None`` if none has one.

    A piece without a logprob (text released at the end, not a token) adds its text to the
    previous entry's ``token`` (or the next one's, when it comes first), so the entries'
    tokens still join to the pieces' text. Log-probabilities below
    :data:`LOGPROB_FLOOR` (``-inf``) are clamped to it.
    """
    out: list[WireLogprob] = []
    loose = ""  # text of logprob-less pieces seen before the first entry
    for piece in pieces:
        if piece.logprob is None:
            if out:
                last = out[-1]
                out[-1] = last.model_copy(update={"token": last.token + piece.text})
            else:
                loose += piece.text
            continue
        top = [
            WireTopLogprob(token=t.token, logprob=_finite(t.logprob)) for t in piece.top_logprobs
        ]
        raw = None if piece.raw is None else list(piece.raw)
        out.append(
            WireLogprob(
                token=loose + piece.text,
                logprob=_finite(piece.logprob),
                top_logprobs=top,
                bytes=raw,
            )
        )
        loose = ""
    return out or None


def token_pieces(text: str, logprobs: list[WireLogprob] | None) -> list[TokenPiece]:
    """Rebuild runtime pieces from a message's ``text`` and ``logprobs``.

    One piece per entry (``token_id=0``: a real token whose id the wire does not carry),
    plus, for text the entries do not cover, one piece with ``token_id=-1`` and no logprob.
    Entries whose tokens are not a prefix of ``text`` are dropped. Always
    ``"".join(p.text for p in pieces) == text``; no piece for an empty ``text`` without entries.
    """
    pieces: list[TokenPiece] = []
    joined = "".join(e.token for e in logprobs or ())
    if logprobs and text.startswith(joined):
        pieces = [
            TokenPiece(
                text=e.token,
                token_id=0,
                logprob=e.logprob,
                top_logprobs=tuple(TopLogprob(t.token, t.logprob) for t in e.top_logprobs),
                raw=None if e.bytes is None else bytes(e.bytes),
            )
            for e in logprobs
        ]
        text = text[len(joined) :]
    if text:
        pieces.append(TokenPiece(text=text, token_id=-1))
    return pieces


def encode(msg: AnyMessage) -> bytes:
    """Serialise any protocol message to compact JSON bytes."""
    return msg.__pydantic_serializer__.to_json(msg)


def _explain(data: bytes, exc: ValidationError, what: str) -> ProtocolError:
    """Build a readable error; only runs on the failure path, so it may parse twice."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return ProtocolError(
            f"{what} is not valid UTF-8 (bad byte at offset {err.start}); send UTF-8 JSON"
        )
    try:
        obj: Any = json.loads(text)
    except RecursionError:
        return ProtocolError(
            f"{what} is nested too deeply; protocol messages need only a few levels"
        )
    except json.JSONDecodeError as err:
        return ProtocolError(
            f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        )
    if not isinstance(obj, dict):
        return ProtocolError(f"{what} must be a JSON object, got {type(obj).__name__}")
    if "v" in obj and obj["v"] != PROTOCOL_VERSION:
        return ProtocolError(
            f"{what} speaks protocol version {obj['v']!r}, this side v{PROTOCOL_VERSION}; "
            "upgrade the older of edge agent and hub"
        )
    problems = []
    for item in exc.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "(message)"
        problems.append(f"{field}: {item['msg']}")
    return ProtocolError(
        f"{what} does not match protocol v{PROTOCOL_VERSION}: " + "; ".join(problems)
    )


def decode_request(data: bytes) -> InferRequest:
    """Parse and validate a request; raise :class:`ProtocolError` saying what is wrong."""
    try:
        return InferRequest.model_validate_json(data)
    except ValidationError as exc:
        raise _explain(data, exc, "request") from None


def decode_reply(data: bytes) -> ResultMessage | ChunkMessage | EndMessage | ErrorMessage:
    """Parse and validate a hub reply; raise :class:`ProtocolError` saying what is wrong."""
    try:
        return _REPLY.validate_json(data)
    except ValidationError as exc:
        raise _explain(data, exc, "reply") from None


class ChunkSequencer:
    """Checks the order of one stream's messages.

    seq = ChunkSequencer()
    seq.feed(ChunkMessage(id="r", seq=0, text="Hi"))   # -> "Hi"
    seq.feed(EndMessage(id="r", seq=1, finish_reason="stop"))  # -> the EndMessage
    """

    def __init__(self) -> None:
        self._next = 0
        self._ended = False

    @property
    def ended(self) -> bool:
        """Whether the terminal message was seen."""
        return self._ended

    @property
    def chunks(self) -> int:
        """How many chunks were accepted so far."""
        return self._next if not self._ended else self._next - 1

    def feed(self, msg: ChunkMessage | EndMessage) -> str | EndMessage:
        """Return the chunk's text (or the end message); raise :class:`StreamGapError` on a gap."""
        if self._ended:
            raise StreamGapError(expected=None, got=msg.seq)
        if msg.seq != self._next:
            raise StreamGapError(expected=self._next, got=msg.seq)
        self._next += 1
        if isinstance(msg, EndMessage):
            self._ended = True
            return msg
        return msg.text
