"""What every model back-end provides to the service.

A back-end turns one :class:`~shared.protocol.InferRequest` into an async stream of
:data:`BackendEvent` s: text pieces (``str``, or :class:`~shared.runtimes.types.TokenPiece`
when it knows tokens and log-probabilities) followed by exactly one
:class:`~shared.runtimes.types.GenerationEnd`. It must stop soon after ``ctx.cancelled`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from shared.protocol import InferRequest
from shared.runtimes.types import GenerationEnd, TokenPiece

#: One event of a back-end's answer; the last one is always a :class:`GenerationEnd`.
BackendEvent = str | TokenPiece | GenerationEnd


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Per-request data besides the request itself."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Incoming NATS headers (``traceparent`` among them), passed through untouched.
    headers: Mapping[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """A loaded model the hub serves."""

    name: str
    #: Request kinds it serves (``chat``, ``completion``, ``classify``).
    kinds: frozenset[str]

    async def start(self) -> None:
        """Load the model (may take long; run blocking work in a thread)."""

    async def close(self) -> None:
        """Free the model."""

    def run(self, req: InferRequest, ctx: RequestContext) -> AsyncGenerator[BackendEvent, None]:
        """Yield text or token pieces, then exactly one :class:`GenerationEnd`."""
        ...
