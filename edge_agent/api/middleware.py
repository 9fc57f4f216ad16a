"""Answer headers and request counting for every HTTP answer.

Answers that did not go through the router (errors, health, models) get ``x-agl-tier: edge``
and ``x-agl-reason: default``, so every answer carries both headers.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.metrics import AgentMetrics

__all__ = ["EdgeHeadersMiddleware"]


class EdgeHeadersMiddleware:
    """Adds ``x-agl-tier``/``x-agl-reason`` to answers that lack them and counts requests."""

    _ROUTES = frozenset(
        {
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/classify",
            "/v1/models",
            "/healthz",
            "/readyz",
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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-agl-tier" not in names:
                    headers.append((b"x-agl-tier", b"edge"))
                if b"x-agl-reason" not in names:
                    headers.append((b"x-agl-reason", b"default"))
                message["headers"] = headers
                found = dict(headers)
                self.metrics.requests.labels(
                    route,
                    str(message["status"]),
                    found[b"x-agl-tier"].decode(),
                    found[b"x-agl-reason"].decode(),
                ).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)
