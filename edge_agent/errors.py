"""Errors raised by the edge agent.

    EdgeError
    ├── ApiError           a request the HTTP API refuses; carries the status and OpenAI error fields
    │   └── QueueFullError the admission queue is full (503 + Retry-After)
    └── NotReadyError      the model is still loading or failed to load (503)

Errors from ``shared`` (``shared.errors.AglError``) are mapped to HTTP answers in
``edge_agent.api.errors``.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class for the edge agent's own errors."""


class ApiError(EdgeError):
    """An error answered to the client in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}


class QueueFullError(ApiError):
    """Every generation slot and queue place is taken; the client should retry later."""

    def __init__(self, *, depth: int, retry_after_s: int) -> None:
        super().__init__(
            503,
            f"the local model is busy ({depth} requests queued); retry after {retry_after_s} s",
            type="server_error",
            code="queue_full",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.depth = depth
        self.retry_after_s = retry_after_s


class NotReadyError(ApiError):
    """The model is not loaded (yet)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            503, message, type="server_error", code="model_not_ready", headers={"Retry-After": "1"}
        )
