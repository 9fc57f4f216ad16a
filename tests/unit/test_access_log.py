"""The access log line, with what the request path reports through ``watch_events``."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from edge_agent.api.middleware import EdgeHeadersMiddleware, watch_events
from edge_agent.execute.events import Event, GenerationEnd, Pieces, Start, TokenPiece
from edge_agent.metrics import AgentMetrics


async def _events() -> object:
    yield Start("smollm2-135m-instruct")
    yield Pieces([TokenPiece(1, "Hi")])
    yield GenerationEnd("stop", 7, 3)


async def answer(request: Request) -> JSONResponse:
    seen: list[Event] = [e async for e in watch_events(request.scope, _events())]  # type: ignore[arg-type]
    return JSONResponse(
        {"events": len(seen)}, headers={"x-agl-tier": "cloud", "x-agl-reason": "policy"}
    )


def _client() -> TestClient:
    app = Starlette(routes=[Route("/v1/chat/completions", answer, methods=["POST"])])
    app.add_middleware(EdgeHeadersMiddleware, metrics=AgentMetrics())
    return TestClient(app)


def test_the_access_line_carries_model_tokens_and_ttft(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.access")
    with _client() as client:
        assert client.post("/v1/chat/completions").json() == {"events": 3}
    (record,) = [r for r in caplog.records if r.name == "edge_agent.access"]
    fields = vars(record)
    assert record.getMessage().startswith("POST /v1/chat/completions 200 cloud/policy ")
    assert (fields["model"], fields["prompt_tokens"], fields["completion_tokens"]) == (
        "smollm2-135m-instruct",
        7,
        3,
    )
    assert 0 <= fields["ttft_ms"] <= fields["duration_ms"]


def test_probes_are_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.access")
    app = Starlette(routes=[Route("/healthz", lambda r: JSONResponse({}))])
    app.add_middleware(EdgeHeadersMiddleware, metrics=AgentMetrics())
    with TestClient(app) as client:
        client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "edge_agent.access"]
