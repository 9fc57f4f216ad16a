"""A completion request as one job, the same shape for chat and plain prompts (pure).

job = chat_job(ChatCompletionRequest.model_validate(body))
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from edge_agent.api.formatter import CompletionFormat
from edge_agent.api.schemas import ChatCompletionRequest, CompletionRequest
from edge_agent.errors import ApiError
from shared.errors import InvalidInput
from shared.runtimes.grammar import JSON_OBJECT, schema_source
from shared.runtimes.types import SamplingParams

__all__ = ["Job", "chat_job", "completion_job"]


@dataclass
class Job:
    """One completion request: what to generate, how, and how to answer."""

    model: str
    kind: Literal["chat", "completion"]
    messages: list[dict[str, Any]] | None
    prompt_text: str | None
    max_tokens: int | None
    params: SamplingParams
    stream: bool
    include_usage: bool = False
    """Streams end with a usage chunk (``stream_options.include_usage``)."""
    temperature_set: bool = False
    """Whether the client sent ``temperature`` (telemetry reports only what was asked)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """The answer's id suffix (``chatcmpl-<id>`` / ``cmpl-<id>``, ``gen_ai.response.id``)."""

    @property
    def response_id(self) -> str:
        """The id the answer carries."""
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.id

    @property
    def asked_temperature(self) -> float | None:
        """The temperature the client asked for, or None if it left the default."""
        return self.params.temperature if self.temperature_set else None

    echo: str = ""
    """Text completions with ``echo``: the prompt, sent before the answer (from either tier)."""

    def answer_format(self, *, model: str) -> CompletionFormat:
        """How the answer is written: ``model`` names the model that answers it."""
        return CompletionFormat(
            response_id=self.response_id,
            model=model,
            chat=self.kind == "chat",
            include_usage=self.include_usage,
            logprobs=self.params.logprobs,
            echo=self.echo,
        )

    def local_params(self, room: int, *, logprobs: bool = False) -> SamplingParams:
        """Sampling for the local model: ``max_tokens`` or the ``room`` left in its context."""
        wanted = self.max_tokens if self.max_tokens is not None else room
        params = replace(self.params, max_tokens=wanted)
        if logprobs and not params.logprobs:  # the cascade judges log-probabilities
            params = replace(params, logprobs=True, top_logprobs=0)
        return params

    def cloud_params(self) -> SamplingParams:
        """Sampling for the hub: ``max_tokens`` or 256 when the client left it open."""
        return replace(self.params, max_tokens=self.max_tokens or 256)


def _sampling(
    req: ChatCompletionRequest | CompletionRequest,
    max_tokens: int | None,
    logprobs: bool,
    top_logprobs: int,
    grammar: str | None = None,
) -> SamplingParams:
    # OpenAI's defaults stand in for explicit nulls.
    return SamplingParams(
        max_tokens=max_tokens or 0,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=req.stop_list(),
        seed=req.seed,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        frequency_penalty=req.frequency_penalty or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        grammar=grammar,
    )


def _set(req: ChatCompletionRequest | CompletionRequest, name: str) -> bool:
    return name in req.model_fields_set and getattr(req, name) is not None


def response_grammar(req: ChatCompletionRequest) -> str | None:
    """The grammar source of ``response_format`` (a 400 naming what cannot be enforced)."""
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JSON_OBJECT
    assert fmt.json_schema is not None  # the schema's validator guarantees it
    schema = fmt.json_schema.json_schema
    try:
        return schema_source({} if schema is None else schema)
    except InvalidInput as exc:
        raise ApiError(400, str(exc), param="response_format.json_schema.schema") from None


def chat_job(req: ChatCompletionRequest) -> Job:
    """The job of a ``/v1/chat/completions`` request."""
    max_tokens = req.max_completion_tokens or req.max_tokens
    if req.tools and req.tool_choice != "none":
        raise ApiError(400, "`tools` are not supported yet", param="tools")
    return Job(
        model=req.model,
        kind="chat",
        messages=[{"role": m.role, "content": m.text()} for m in req.messages],
        prompt_text=None,
        max_tokens=max_tokens,
        params=_sampling(
            req, max_tokens, bool(req.logprobs), req.top_logprobs or 0, response_grammar(req)
        ),
        stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        temperature_set=_set(req, "temperature"),
    )


def completion_job(req: CompletionRequest) -> Job:
    """The job of a ``/v1/completions`` request (16 tokens unless ``max_tokens`` says otherwise)."""
    max_tokens = req.max_tokens if req.max_tokens is not None else 16
    return Job(
        model=req.model,
        kind="completion",
        messages=None,
        prompt_text=req.prompt_text(),
        max_tokens=max_tokens,
        params=_sampling(req, max_tokens, req.logprobs is not None, req.logprobs or 0),
        stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        temperature_set=_set(req, "temperature"),
        echo=req.prompt_text() if req.echo else "",
    )
