"""API errors as gRPC statuses: the same message as over REST, the status code gRPC expects.

    400 → INVALID_ARGUMENT        404 → NOT_FOUND          413 → RESOURCE_EXHAUSTED
    503 queue_full → RESOURCE_EXHAUSTED                    503 otherwise → UNAVAILABLE
    504 → DEADLINE_EXCEEDED       401 → UNAUTHENTICATED    403 → PERMISSION_DENIED
    502 incomplete → ABORTED      anything else → INTERNAL

``x-agl-*`` and ``retry-after`` headers travel as trailing metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeAlias

import grpc

from edge_agent.api.errors import api_error_for
from edge_agent.api.state import AgentState
from edge_agent.errors import ApiError
from shared.errors import AglError

__all__ = ["Context", "abort", "api_errors", "status_code"]

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
"""The server-side context of any call."""

_BY_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.ABORTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(status: int, code: str | None = None) -> grpc.StatusCode:
    """The gRPC status of an HTTP ``status`` (with the OpenAI error ``code``)."""
    if code == "queue_full":
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if code == "timeout":
        return grpc.StatusCode.DEADLINE_EXCEEDED
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


async def abort(context: Context, exc: ApiError) -> NoReturn:
    """End the call with ``exc``'s status and message (raises, as ``context.abort`` does)."""
    trailing = tuple(
        (k.lower(), v)
        for k, v in exc.headers.items()
        if k.lower().startswith("x-agl-") or k.lower() == "retry-after"
    )
    await context.abort(status_code(exc.status, exc.code), exc.message, trailing_metadata=trailing)
    raise AssertionError("context.abort returned")  # pragma: no cover - it always raises


@asynccontextmanager
async def api_errors(state: AgentState, context: Context) -> AsyncIterator[None]:
    """Turn the request path's errors (ApiError, AglError) into gRPC statuses."""
    try:
        yield
    except ApiError as exc:
        if exc.code == "queue_full":
            state.metrics.rejected.labels("all").inc()
        await abort(context, exc)
    except AglError as exc:
        await abort(context, api_error_for(exc))
