"""How errors become HTTP answers: every one in OpenAI's ``{"error": {...}}`` shape.

ApiError (edge_agent.errors)          → its own status and fields
AglError (shared.errors)              → 400 for bad input/context overflow/unsupported, else 500
starlette HTTPException (404, 405)    → a hint naming the routes that exist
anything else                         → 500 "internal error; see the agent's log" (logged)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from edge_agent.api.http_io import error_response
from edge_agent.api.state import agent_state
from edge_agent.errors import ApiError
from shared.errors import (
    AglError,
    ContextOverflowError,
    DeadlineExceeded,
    InvalidInput,
    UnsupportedOperation,
)

log = logging.getLogger("edge_agent.api")

__all__ = ["EXCEPTION_HANDLERS", "api_error_for"]

ROUTES_HINT = "see /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/classify"


def api_error_for(exc: AglError) -> ApiError:
    """The HTTP answer for an error raised by ``shared`` (runtimes, plugins, protocol)."""
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, InvalidInput):
        return ApiError(400, str(exc), code="invalid_input")
    if isinstance(exc, UnsupportedOperation):
        return ApiError(400, str(exc), code="unsupported")
    if isinstance(exc, DeadlineExceeded):
        return ApiError(504, str(exc), type="server_error", code="timeout")
    return ApiError(500, str(exc), type="server_error", code="internal_error")


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.code == "queue_full":
        agent_state(request).metrics.rejected.labels("all").inc()
    return error_response(exc)


async def _on_agl_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AglError)
    return error_response(api_error_for(exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    hint = {
        404: f"no route {request.url.path}; {ROUTES_HINT}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    message = hint.get(exc.status_code, str(exc.detail))
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return error_response(ApiError(exc.status_code, message, code=code))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return error_response(
        ApiError(
            500, "internal error; see the agent's log", type="server_error", code="internal_error"
        )
    )


EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiError: _on_api_error,
    AglError: _on_agl_error,
    HTTPException: _on_http_error,
    Exception: _on_unexpected,
}
