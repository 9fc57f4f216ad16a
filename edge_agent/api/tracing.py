"""The edge's server span per HTTP request, and the routing decision on the trace.

The span continues an incoming W3C ``traceparent``; its context is what the uplink injects
into the NATS headers, so the hub's span joins the same trace. Health probes and scrapes
get no span (they would bury the real traces).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_agent.router.cascade import Judgement
from edge_agent.router.decide import RouteDecision
from shared.telemetry import Instruments, extract_context
from shared.telemetry.genai import ROUTE_REASON, ROUTE_SCORE, ROUTE_THRESHOLD, TIER

_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics", "/status"})
_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/classify", "/v1/models"}
)
_PROPAGATED = (b"traceparent", b"tracestate")


def _route(path: str) -> str:
    if path in _ROUTES:
        return path
    return "/v1/models/{model}" if path.startswith("/v1/models/") else "other"


class TracingMiddleware:
    """Starts a SERVER span per request (ended when the last body byte is sent, so a stream's
    span covers the whole stream) and activates the agent's instruments for the request."""

    def __init__(self, app: ASGIApp, *, instruments: Instruments) -> None:
        self.app = app
        self.instruments = instruments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k in _PROPAGATED
        }
        route = _route(scope["path"])
        method = scope.get("method", "GET")
        tracer = self.instruments.telemetry.tracer
        with (
            self.instruments.activate(),
            tracer.start_as_current_span(
                f"{method} {route}",
                context=extract_context(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes=_server_attributes(scope, method, route),
            ) as span,
        ):
            if not span.is_recording():
                await self.app(scope, receive, send)
                return

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    headers = dict(message.get("headers", ()))
                    if b"x-agl-tier" in headers:
                        span.set_attribute(TIER, headers[b"x-agl-tier"].decode())
                    if b"x-agl-reason" in headers:
                        span.set_attribute(ROUTE_REASON, headers[b"x-agl-reason"].decode())
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_traced)


def _server_attributes(scope: Scope, method: str, route: str) -> dict[str, str | int]:
    """HTTP semantic-convention attributes of the server span."""
    attrs: dict[str, str | int] = {
        "http.request.method": method,
        "http.route": route,
        "url.scheme": str(scope.get("scheme", "http")),
        "url.path": str(scope.get("path", "")),
    }
    client = scope.get("client")
    if client:
        attrs["client.address"] = str(client[0])
        attrs["client.port"] = int(client[1])
    server = scope.get("server")
    if server:
        attrs["server.address"] = str(server[0])
        if server[1] is not None:
            attrs["server.port"] = int(server[1])
    return attrs


def route_attributes(decision: RouteDecision) -> Mapping[str, str | bool]:
    """The decision as span attributes (``agl.route.reason``, tier, rule, detail)."""
    attrs: dict[str, str | bool] = {
        ROUTE_REASON: str(decision.reason),
        TIER: str(decision.tier),
        "agl.route.cascade": decision.cascade,
    }
    if decision.rule:
        attrs["agl.route.rule"] = decision.rule
    if decision.detail:
        attrs["agl.route.detail"] = decision.detail
    if decision.cloud_model:
        attrs["agl.route.cloud_model"] = decision.cloud_model
    if decision.first_tier is not None:
        attrs["agl.route.first_tier"] = str(decision.first_tier)
    if decision.first_reason is not None:
        attrs["agl.route.first_reason"] = str(decision.first_reason)
    return attrs


def note_decision(span: trace.Span, decision: RouteDecision) -> None:
    """Put a decision on ``span`` (the route span, or the request's server span)."""
    if span.is_recording():
        span.set_attributes(route_attributes(decision))


def note_judgement(tracer: trace.Tracer, judgement: Judgement) -> None:
    """Record the cascade's judgement as a short ``agl.route.cascade`` span."""
    with tracer.start_as_current_span("agl.route.cascade") as span:
        if span.is_recording():
            span.set_attributes(
                {
                    ROUTE_SCORE: judgement.score,
                    ROUTE_THRESHOLD: judgement.threshold,
                    "agl.route.escalate": judgement.escalate,
                    "agl.route.detail": judgement.detail,
                }
            )
