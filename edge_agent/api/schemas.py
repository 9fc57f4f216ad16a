"""Request bodies of the HTTP API, validated strictly (wrong types are 400s, not coerced)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_agent.api.openai_fields import (
    NamedToolChoice,
    ResponseFormat,
    ToolCallIn,
    ToolDef,
    refuse,
)
from shared.protocol import InferParams

MAX_TOKENS: int = InferParams.model_fields["max_tokens"].metadata[1].le
"""The largest ``max_tokens`` any tier accepts (the wire protocol's bound)."""


class _Body(BaseModel):
    # Every field is named: unknown ones are a 400, so nothing a client asks for is dropped.
    model_config = ConfigDict(extra="forbid", strict=True)

    user: Any = None
    metadata: Any = None
    store: Any = None
    service_tier: Any = None
    safety_identifier: Any = None
    prompt_cache_key: Any = None
    prompt_cache_retention: Any = None
    prompt_cache_options: Any = None
    reasoning_effort: Any = None


class TextPart(BaseModel):
    """One ``{"type": "text", "text": …}`` content part."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: StrictStr


class ChatMessageIn(BaseModel):
    """One message of a chat request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None
    refusal: StrictStr | None = None
    audio: Any = None
    function_call: Any = None

    @field_validator("audio", "function_call")
    @classmethod
    def _not_supported(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise ValueError(f"`{info.field_name}` in messages is not supported")
        return value

    def text(self) -> str:
        """The content as plain text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: StrictBool | None = False
    include_obfuscation: StrictBool | None = None


class _Sampling(_Body):
    model: StrictStr = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    n: StrictInt | None = Field(None, ge=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: Any = None

    _refused = field_validator("logit_bias")(refuse)

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @field_validator("n")
    @classmethod
    def _only_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported; send several requests for several choices")
        return value

    def stop_list(self) -> tuple[str, ...]:
        """Stop sequences as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS)
    logprobs: StrictBool | None = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    functions: Any = None
    function_call: Any = None
    web_search_options: Any = None
    moderation: Any = None
    verbosity: Any = None

    _refused_chat = field_validator(
        "audio",
        "modalities",
        "prediction",
        "functions",
        "function_call",
        "web_search_options",
        "moderation",
        "verbosity",
    )(refuse)

    @field_validator("tools")
    @classmethod
    def _unique_names(cls, value: list[ToolDef] | None) -> list[ToolDef] | None:
        seen: set[str] = set()
        for tool in value or []:
            if tool.function.name in seen:
                raise ValueError(
                    f"two tools are named {tool.function.name!r}; names must be unique"
                )
            seen.add(tool.function.name)
        return value

    @model_validator(mode="after")
    def _choice_names_a_tool(self) -> ChatCompletionRequest:
        choice = self.tool_choice
        names = {t.function.name for t in self.tools or []}
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(
                f"tool_choice names the function {choice.function.name!r}, which is not in `tools`"
                f" ({', '.join(sorted(names)) or 'none declared'})"
            )
        if choice == "required" and not names:
            raise ValueError('tool_choice "required" needs at least one tool in `tools`')
        return self


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: StrictStr | list[StrictStr]
    logprobs: StrictInt | None = Field(None, ge=0, le=5)
    echo: StrictBool | None = False
    suffix: Any = None
    best_of: Any = None

    _refused_text = field_validator("suffix", "best_of")(refuse)

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError(
                "send exactly one prompt per request (a list of one string is accepted)"
            )
        return value

    def prompt_text(self) -> str:
        """The single prompt string."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(_Body):
    """``POST /v1/embeddings``: text for GGUF models, token ids for ONNX embedders."""

    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: StrictInt | None = Field(None, ge=1)
    """Truncate each vector to this many dimensions and re-normalise it (as OpenAI does)."""

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if (
            value == ""
            or value == []
            or (isinstance(value, list) and any(v in ("", []) for v in value))
        ):
            raise ValueError("input must not be empty")
        return value


class ClassifyRequest(_Body):
    """``POST /v1/classify``: one feature vector or a batch of them."""

    model: StrictStr = Field(min_length=1)
    input: list[float] | list[list[float]]

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: list[float] | list[list[float]]) -> list[float] | list[list[float]]:
        if not value or any(isinstance(v, list) and not v for v in value):
            raise ValueError("input must hold at least one non-empty feature vector")
        return value
