"""Answer headers, request counting and the access log, for every HTTP answer.

Answers that did not go through the router (errors, health, models) get ``x-agl-tier: edge``
and ``x-agl-reason: default``, so every answer carries both headers.

The access log (logger ``edge_agent.access``) writes one structured line per request, as
llama-server and Ollama do: method, path, status, tier, reason, model, prompt and completion
tokens, time to first token, duration, trace id and request id (``x-request-id``: a
completion's response id, ``chatcmpl-…``/``cmpl-…``, else ``req-…``, on every answer). Probes and scrapes (``/healthz``,
``/readyz``, ``/metrics``) are logged at DEBUG, everything else at INFO. The request path
reports what only it knows through :func:`watch_events`, which notes the answering model,
the first token and the usage in the request's ASGI scope state.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.execute.events import Event, GenerationEnd, Pieces, Start
from edge_agent.metrics import AgentMetrics
from shared.telemetry.logs import trace_ids

__all__ = ["AccessRecord", "EdgeHeadersMiddleware", "access_record", "watch_events"]

access_log = logging.getLogger("edge_agent.access")

_STATE_KEY = "agl_access"
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class AccessRecord:
    """What the access log line of one request says beyond method, path and status."""

    started: float
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None


def access_record(scope: Scope) -> AccessRecord | None:
    """The access record of the request whose scope this is (None outside the middleware)."""
    state = scope.get("state")
    record = state.get(_STATE_KEY) if isinstance(state, dict) else None
    return record if isinstance(record, AccessRecord) else None


async def watch_events(scope: Scope, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """Pass ``events`` on unchanged, noting the answering model, first token and usage.

    events = watch_events(request.scope, events)   # in the request path, before formatting
    """
    record = access_record(scope)
    try:
        async for event in events:
            if record is not None:
                if isinstance(event, Start):
                    record.model = event.model
                elif isinstance(event, Pieces) and record.ttft_s is None:
                    record.ttft_s = time.perf_counter() - record.started
                elif isinstance(event, GenerationEnd):
                    record.prompt_tokens = event.prompt_tokens
                    record.completion_tokens = event.completion_tokens
            yield event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _incoming_trace_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"traceparent":
            parts = value.decode("latin-1").split("-")
            return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None
    return None


class EdgeHeadersMiddleware:
    """Adds ``x-agl-tier``/``x-agl-reason`` to answers that lack them, counts requests and
    writes the access log line."""

    _ROUTES = frozenset(
        {
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/classify",
            "/v1/models",
            "/healthz",
            "/readyz",
            "/status",
            "/metrics",
        }
    )

    def __init__(self, app: ASGIApp, *, metrics: AgentMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = (
            path
            if path in self._ROUTES
            else ("/v1/models/{model}" if path.startswith("/v1/models/") else "other")
        )
        started = time.perf_counter()
        record = AccessRecord(started=started)
        scope.setdefault("state", {})[_STATE_KEY] = record
        answered: dict[str, Any] = {"status": 500, "tier": "edge", "reason": "default"}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-agl-tier" not in names:
                    headers.append((b"x-agl-tier", b"edge"))
                if b"x-agl-reason" not in names:
                    headers.append((b"x-agl-reason", b"default"))
                if b"x-request-id" not in names:  # completions send their response id
                    headers.append((b"x-request-id", f"req-{uuid.uuid4().hex}".encode()))
                message["headers"] = headers
                found = dict(headers)
                answered["status"] = int(message["status"])
                answered["tier"] = found[b"x-agl-tier"].decode()
                answered["reason"] = found[b"x-agl-reason"].decode()
                answered["request_id"] = found[b"x-request-id"].decode("latin-1")
                self.metrics.requests.labels(
                    route, str(message["status"]), answered["tier"], answered["reason"]
                ).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            duration = time.perf_counter() - started
            self.metrics.request_duration.labels(route).observe(duration)
            self._log(scope, path, answered, record, duration)

    @staticmethod
    def _log(
        scope: Scope, path: str, answered: dict[str, Any], record: AccessRecord, duration: float
    ) -> None:
        level = logging.DEBUG if path in _QUIET else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        method = scope.get("method", "GET")
        ids = trace_ids()
        fields: dict[str, Any] = {
            "http_method": method,
            "http_path": path,
            "http_status": answered["status"],
            "tier": answered["tier"],
            "reason": answered["reason"],
            "model": record.model,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "ttft_ms": None if record.ttft_s is None else round(record.ttft_s * 1000, 1),
            "duration_ms": round(duration * 1000, 1),
            "trace_id": ids[0] if ids else _incoming_trace_id(scope),
            "request_id": answered.get("request_id"),
        }
        access_log.log(
            level,
            "%s %s %d %s/%s %.0f ms %s",
            method,
            path,
            answered["status"],
            answered["tier"],
            answered["reason"],
            duration * 1000,
            answered.get("request_id", "-"),
            extra=fields,
        )
