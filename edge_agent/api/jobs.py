"""A completion request as one job, the same shape for chat and plain prompts (pure).

job = chat_job(ChatCompletionRequest.model_validate(body))
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from edge_agent.api.formatter import CompletionFormat
from edge_agent.api.schemas import ChatCompletionRequest, ChatMessageIn, CompletionRequest
from edge_agent.errors import ApiError
from shared.errors import InvalidInput
from shared.runtimes.grammar import JSON_OBJECT, schema_source
from shared.runtimes.types import SamplingParams
from shared.tool_calls import ToolSpec, grammar_source

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
    tools: ToolSpec | None = None
    """Chat with ``tools``: the functions, ``tool_choice`` and ``parallel_tool_calls``."""

    @property
    def needs(self) -> frozenset[str]:
        """The model capabilities this job needs (``tools``, ``json_schema``, ``logprobs``)."""
        needs = set()
        if self.tools is not None and self.tools.calling:
            needs.add("tools")
        elif self.params.grammar is not None:
            needs.add("json_schema")
        if self.params.logprobs:
            needs.add("logprobs")
        return frozenset(needs)

    def answer_format(self, *, model: str) -> CompletionFormat:
        """How the answer is written: ``model`` names the model that answers it."""
        return CompletionFormat(
            response_id=self.response_id,
            model=model,
            chat=self.kind == "chat",
            include_usage=self.include_usage,
            logprobs=self.params.logprobs,
            echo=self.echo,
            tools=self.tools,
        )

    def local_params(self, room: int, *, logprobs: bool = False) -> SamplingParams:
        """Sampling for the local model: ``max_tokens`` or the ``room`` left in its context."""
        wanted = self.max_tokens if self.max_tokens is not None else room
        params = replace(self.params, max_tokens=wanted)
        if logprobs and not params.logprobs:  # the cascade judges log-probabilities
            params = replace(params, logprobs=True, top_logprobs=0)
        return params

    def cloud_params(self) -> SamplingParams:
        """Sampling for the hub: ``max_tokens`` or 256 when the client left it open.

        A tool grammar is not sent: the hub makes it from the request's ``tools``."""
        calling = self.tools is not None and bool(self.tools.calling)
        grammar = None if calling else self.params.grammar
        return replace(self.params, max_tokens=self.max_tokens or 256, grammar=grammar)


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


def tool_spec(req: ChatCompletionRequest) -> ToolSpec | None:
    """The checked tools of a request (a 400 naming the tool or schema at fault)."""
    if not req.tools:
        return None
    choice = req.tool_choice
    name = choice if isinstance(choice, str) or choice is None else choice.function.name
    fmt = req.response_format
    if fmt is not None and fmt.type != "text" and choice != "none":
        raise ApiError(
            400,
            "`response_format` cannot be combined with `tools` here; send one of them "
            '(or tool_choice "none")',
            param="response_format",
        )
    try:
        return ToolSpec.make(
            [t.function.model_dump(exclude_none=True) for t in req.tools],
            choice=name,
            parallel=req.parallel_tool_calls,
        )
    except InvalidInput as exc:
        raise ApiError(400, str(exc), param="tools") from None


def _message(m: ChatMessageIn) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.text()}
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump() for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def chat_job(req: ChatCompletionRequest) -> Job:
    """The job of a ``/v1/chat/completions`` request."""
    max_tokens = req.max_completion_tokens or req.max_tokens
    tools = tool_spec(req)
    try:
        calling = tools is not None and bool(tools.calling)
        grammar = grammar_source(tools) if tools is not None and calling else response_grammar(req)
    except InvalidInput as exc:  # the functions' schemas together are too large
        raise ApiError(400, str(exc), param="tools") from None
    return Job(
        model=req.model,
        kind="chat",
        messages=[_message(m) for m in req.messages],
        prompt_text=None,
        max_tokens=max_tokens,
        params=_sampling(req, max_tokens, bool(req.logprobs), req.top_logprobs or 0, grammar),
        stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        temperature_set=_set(req, "temperature"),
        tools=tools,
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
