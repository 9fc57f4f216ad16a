"""Model capabilities: what a model can be asked for, and which hub model can answer a request.

Each model, local or on the hub, declares its capabilities (:data:`CAPABILITIES`) and its context
size. The hub answers ``agl.v1.dev.<device>.models`` (``shared.protocol.models_subject``) with a
:class:`ModelsReply`; the edge routes a request that needs a capability its local model lacks,
or that the policy marks ``local_weak``, to a hub model that has it (reason ``capability``)::

    reply = ModelsReply(models=[ModelInfo(name="glm-4-plus", capabilities=["tools"], context=8192)])
    capable_model(reply.models, needs={"tools"}, prefer="glm-4-plus")   # 'glm-4-plus'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CAPABILITIES",
    "Capability",
    "ModelInfo",
    "ModelsReply",
    "capable_model",
    "runtime_capabilities",
]

Capability = Literal["tools", "json_schema", "logprobs", "embeddings"]
CAPABILITIES: tuple[Capability, ...] = ("tools", "json_schema", "logprobs", "embeddings")
"""``tools`` (tool calls), ``json_schema`` (``response_format`` JSON), ``logprobs``, ``embeddings``."""


class ModelInfo(BaseModel):
    """One model a hub serves: its name, capabilities and context size (0: unknown)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    kinds: list[str] = Field(default_factory=list, max_length=8)
    """Request kinds it serves (``chat``, ``completion``, ``classify``)."""
    capabilities: list[str] = Field(default_factory=list, max_length=32)
    context: int = Field(default=0, ge=0)


class ModelsReply(BaseModel):
    """The hub's answer on ``agl.v1.dev.<device>.models``: every model it serves."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    type: Literal["models"] = "models"
    models: list[ModelInfo] = Field(default_factory=list, max_length=1024)


def runtime_capabilities(kind: str) -> frozenset[str]:
    """What a runtime can do: a ``gguf`` chat model everything (grammars, logprobs, tool calls
    in the generic format, embeddings); an ``onnx`` embedder embeddings; anything else nothing."""
    return {
        "gguf": frozenset(CAPABILITIES),
        "onnx-embed": frozenset({"embeddings"}),
    }.get(kind, frozenset())


def capable_model(models: Iterable[ModelInfo], needs: Iterable[str], *, prefer: str) -> str | None:
    """The hub model that has every capability in ``needs``: ``prefer`` if it has, else the first
    such chat model by name; ``None`` when there is none."""
    wanted = set(needs)
    fit = sorted(
        m.name
        for m in models
        if wanted <= set(m.capabilities) and (not m.kinds or "chat" in m.kinds)
    )
    if prefer in fit:
        return prefer
    return fit[0] if fit else None
