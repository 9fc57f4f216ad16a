"""OpenAI request fields: which are ignored, which refused, and the structured-output/tool shapes.

Every field of OpenAI's chat, completions and embeddings request schemas is either honoured,
refused with a 400 naming it (unless it holds a value that changes nothing), or listed in
:data:`IGNORED_FIELDS` (harmless bookkeeping). Unknown fields are a 400 too (``extra="forbid"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from edge_agent.errors import ApiError

__all__ = [
    "IGNORED_FIELDS",
    "UNSUPPORTED",
    "FunctionDef",
    "JsonSchemaFormat",
    "NamedToolChoice",
    "ResponseFormat",
    "ToolCallIn",
    "ToolDef",
    "refuse",
    "shorten",
]

IGNORED_FIELDS: frozenset[str] = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "reasoning_effort",
    }
)
"""OpenAI request fields accepted and ignored because they do not change the answer
(bookkeeping, billing, caching hints; no model here reasons, so ``reasoning_effort`` has nothing
to tune). Every other field is honoured or refused with a 400 naming it."""

UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "audio": (lambda v: v is None, "audio output is not supported"),
    "modalities": (lambda v: v is None or v == ["text"], 'only modalities ["text"] is supported'),
    "prediction": (lambda v: v is None, "predicted outputs are not supported"),
    "functions": (lambda v: not v, "the deprecated `functions` is not supported; use `tools`"),
    "function_call": (
        lambda v: v is None,
        "the deprecated `function_call` is not supported; use `tool_choice`",
    ),
    "logit_bias": (lambda v: not v, "logit_bias is not supported"),
    "web_search_options": (lambda v: v is None, "web search is not supported"),
    "moderation": (lambda v: v is None, "moderation is not supported"),
    "verbosity": (lambda v: v in (None, "medium"), 'only verbosity "medium" is supported'),
    "suffix": (lambda v: not v, "suffix (insertion) is not supported by these models"),
    "best_of": (lambda v: v in (None, 1), "only best_of=1 is supported"),
}
"""Fields that are refused (a 400 naming them) unless they hold a value that changes nothing."""


def refuse(value: Any, info: ValidationInfo) -> Any:
    name = info.field_name or ""
    if name in UNSUPPORTED:
        harmless, why = UNSUPPORTED[name]
        if not harmless(value):
            raise ValueError(f"`{name}` is not supported here: {why}")
    return value


class FunctionCallIn(BaseModel):
    """The function of an assistant message's tool call."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: StrictStr
    arguments: StrictStr


class ToolCallIn(BaseModel):
    """One tool call of an assistant message, fed back in the conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCallIn


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: StrictStr | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: ``text``, ``json_object`` or ``json_schema``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError('`json_schema` is needed with, and only with, type "json_schema"')
        return self


class FunctionDef(BaseModel):
    """A declared function: its name and the JSON schema of its arguments."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ToolDef(BaseModel):
    """One entry of ``tools``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    """``tool_choice.function``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: StrictStr


class NamedToolChoice(BaseModel):
    """``tool_choice={"type": "function", "function": {"name": …}}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["function"]
    function: NamedFunction


def shorten(vectors: list[list[float]], dimensions: int) -> list[list[float]]:
    """OpenAI's ``dimensions``: each vector cut to its first ``dimensions`` values, re-normalised."""
    size = len(vectors[0]) if vectors else 0
    if dimensions > size:
        raise ApiError(
            400,
            f"dimensions={dimensions} is more than this model's {size}; ask for at most {size}",
            param="dimensions",
        )
    out = []
    for v in vectors:
        cut = v[:dimensions]
        norm = math.sqrt(sum(x * x for x in cut)) or 1.0
        out.append([x / norm for x in cut])
    return out
