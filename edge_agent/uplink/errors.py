"""Errors raised by the uplink to the hub.

EdgeError
└── UplinkError
    ├── CloudUnavailable   nothing was sent or nothing came back: fall back to local now
    └── CloudFailed        the hub took it but the answer failed (timeout, gap, error,
                           hub died); ``tokens_sent``: part of it already reached the caller
"""

from __future__ import annotations

from edge_agent.errors import EdgeError


class UplinkError(EdgeError):
    """Base class of the uplink's errors."""


class CloudUnavailable(UplinkError):
    """The cloud cannot take this request (no connection or responders, circuit open, no budget).

    ``reason`` is a short machine-readable word: ``not_connected``, ``auth_refused``,
    ``permission_denied``, ``no_responders``,
    ``circuit_open``, ``budget_spent``, ``busy``, ``too_large`` or ``unknown_model``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CloudFailed(UplinkError):
    """The hub took the request but the answer did not complete.

    When ``tokens_sent`` is true the caller already has part of the answer, so it cannot
    silently retry locally; it must end the response with an error.
    """

    def __init__(self, message: str, *, tokens_sent: bool, code: str = "failed") -> None:
        super().__init__(message)
        self.tokens_sent = tokens_sent
        self.code = code
