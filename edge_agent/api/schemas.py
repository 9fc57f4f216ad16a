"""Request bodies of the HTTP API, validated strictly (wrong types are 400s, not coerced)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from shared.protocol import InferParams

MAX_TOKENS: int = InferParams.model_fields["max_tokens"].metadata[1].le
"""The largest ``max_tokens`` any tier accepts (the wire protocol's bound)."""


class _Body(BaseModel):
    # Unknown OpenAI parameters (user, presence_penalty …) are accepted and ignored,
    # as llama.cpp's server and Ollama do; known ones are type-checked strictly.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Body):
    """One ``{"type": "text", "text": …}`` content part."""

    type: Literal["text"]
    text: StrictStr


class ChatMessageIn(_Body):
    """One message of a chat request."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        """The content as plain text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Body):
    """OpenAI's ``stream_options``."""

    include_usage: StrictBool = False


class _Sampling(_Body):
    model: StrictStr = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    n: StrictInt = Field(1, ge=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @field_validator("n")
    @classmethod
    def _only_one(cls, value: int) -> int:
        if value != 1:
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
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: StrictStr | list[StrictStr]
    logprobs: StrictInt | None = Field(None, ge=0, le=5)
    echo: StrictBool = False

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
    encoding_format: Literal["float", "base64"] = "float"

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
