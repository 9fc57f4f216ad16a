"""What every model back-end provides to the service.

A back-end turns one :class:`~shared.protocol.InferRequest` into an async stream of text
pieces followed by one :class:`Finish`. It must stop soon after ``ctx.cancelled`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from shared.protocol import ClassifyResult, InferRequest


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Per-request data besides the request itself."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Incoming NATS headers (``traceparent`` among them), passed through untouched.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of a generation."""

    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    classifications: list[ClassifyResult] | None = None


class Backend(Protocol):
    """A loaded model the hub serves."""

    name: str
    #: Request kinds it serves (``chat``, ``completion``, ``classify``).
    kinds: frozenset[str]

    async def start(self) -> None:
        """Load the model (may take long; run blocking work in a thread)."""

    async def close(self) -> None:
        """Free the model."""

    def run(self, req: InferRequest, ctx: RequestContext) -> AsyncGenerator[str | Finish, None]:
        """Yield text pieces, then exactly one :class:`Finish`."""
        ...
