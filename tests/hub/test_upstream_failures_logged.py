"""An OpenAI upstream that fails is logged on the hub, not only answered to the edge."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest

from cloud_hub.backends.base import RequestContext
from cloud_hub.backends.openai_upstream import OpenAIUpstreamBackend
from cloud_hub.errors import BackendError
from tests.fixtures.hubs import infer_request


async def _run(transport: httpx.MockTransport) -> None:
    backend = OpenAIUpstreamBackend(
        "glm-4-plus", base_url="http://upstream.test/v1", api_key_env=None, transport=transport
    )
    await backend.start()
    try:
        ctx = RequestContext(cancelled=threading.Event(), headers={})
        async for _ in backend.run(infer_request("hi", model="glm-4-plus"), ctx):
            pass
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (lambda r: httpx.Response(429, text="rate limited"), "upstream answered HTTP 429"),
        (
            lambda r: httpx.Response(200, text="data: {oops\n\n"),
            "upstream sent a malformed SSE event",
        ),
    ],
)
async def test_upstream_failures_are_logged_as_warnings(
    caplog: pytest.LogCaptureFixture, handler: object, expected: str
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud_hub.backends.openai_upstream")
    with pytest.raises(BackendError, match=expected):
        await _run(httpx.MockTransport(handler))  # type: ignore[arg-type]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"model glm-4-plus: {expected}")


async def test_an_unreachable_upstream_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    caplog.set_level(logging.WARNING, logger="cloud_hub.backends.openai_upstream")
    with pytest.raises(BackendError):
        await _run(httpx.MockTransport(refuse))
    assert "upstream http://upstream.test/v1 failed: connection refused" in caplog.text
