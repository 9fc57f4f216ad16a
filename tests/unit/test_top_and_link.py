"""``edge-agent top``'s frame (pure) and the hub link's log lines (pure, fake clock)."""

from __future__ import annotations

import logging

import pytest

from edge_agent.top_view import parse_metrics, quantile, render_frame
from edge_agent.uplink.link import LinkState

BEFORE = """
# TYPE agl_http_requests_total counter
agl_http_requests_total{route="/v1/chat/completions",status="200",tier="edge",reason="default"} 10
agl_http_requests_total{route="/healthz",status="200",tier="edge",reason="default"} 50
# TYPE gen_ai_server_time_to_first_token_seconds histogram
gen_ai_server_time_to_first_token_seconds_bucket{le="0.1"} 5
gen_ai_server_time_to_first_token_seconds_bucket{le="0.5"} 10
gen_ai_server_time_to_first_token_seconds_bucket{le="+Inf"} 10
gen_ai_server_time_to_first_token_seconds_count 10
gen_ai_server_time_to_first_token_seconds_sum 1.0
# TYPE agl_plugin_errors_total counter
agl_plugin_errors_total{plugin="pii_redact",kind="timeout"} 1
"""
AFTER = """
# TYPE agl_http_requests_total counter
agl_http_requests_total{route="/v1/chat/completions",status="200",tier="edge",reason="default"} 14
agl_http_requests_total{route="/v1/chat/completions",status="200",tier="cloud",reason="policy"} 2
agl_http_requests_total{route="/healthz",status="200",tier="edge",reason="default"} 90
# TYPE gen_ai_server_time_to_first_token_seconds histogram
gen_ai_server_time_to_first_token_seconds_bucket{le="0.1"} 5
gen_ai_server_time_to_first_token_seconds_bucket{le="0.5"} 16
gen_ai_server_time_to_first_token_seconds_bucket{le="+Inf"} 16
gen_ai_server_time_to_first_token_seconds_count 16
gen_ai_server_time_to_first_token_seconds_sum 2.0
# TYPE agl_queue_depth gauge
agl_queue_depth{model="smollm2-135m-instruct"} 3
# TYPE agl_circuit_state gauge
agl_circuit_state{peer="hub"} 2
# TYPE agl_plugin_errors_total counter
agl_plugin_errors_total{plugin="pii_redact",kind="timeout"} 3
"""
STATUS = {
    "status": "ready",
    "version": "0.1.0",
    "device_id": "dev-1",
    "uptime_s": 60,
    "models": [{"id": "smollm2-135m-instruct", "queue_depth": 3}],
    "hub": {
        "configured": True,
        "connected": False,
        "circuit": "open",
        "budget": {"remaining_today": None},
        "last_error": "connection refused",
    },
    "plugins": {"loaded": [{"name": "pii_redact"}]},
}


def test_top_frame_shows_rates_by_tier_and_reason_ttft_queue_circuit_and_plugin_errors() -> None:
    frame = render_frame(
        parse_metrics(BEFORE), parse_metrics(AFTER), seconds=2.0, status=STATUS, url="http://a"
    )
    lines = [" ".join(line.split()) for line in frame.splitlines()]
    assert "requests/s 3.00 (over 2.0 s)" in lines  # probes are not answers
    assert "edge default 2.00 14" in lines
    assert "cloud policy 1.00 2" in lines
    assert any(line.startswith("time to first token p50 ") for line in lines)
    assert "(last interval)" in frame
    assert "smollm2-135m-instruct 3" in lines
    assert "circuit: hub open" in lines
    assert "plugins: 1 loaded errors 3 (+2)" in lines
    assert "hub link: DOWN circuit open budget unlimited last error: connection refused" in lines


def test_top_frame_survives_an_agent_that_exports_little() -> None:
    frame = render_frame(parse_metrics(""), parse_metrics(""), seconds=1, status={}, url="u")
    assert "requests/s 0.00" in frame and "circuit: -" in frame


def test_quantile_interpolates_within_a_bucket() -> None:
    assert quantile({0.1: 0, 0.5: 10, float("inf"): 10}, 0.5) == pytest.approx(0.3)
    assert quantile({}, 0.5) is None
    assert quantile({1.0: 0, float("inf"): 0}, 0.5) is None


def test_a_down_link_is_logged_once_then_reminded_then_its_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    link = LinkState("nats://hub:4222", reminder_s=60, clock=lambda: now[0], wall=lambda: 5.0)
    with caplog.at_level(logging.INFO, logger="edge_agent.uplink"):
        for _ in range(90):  # three minutes of failures, one every 2 s
            link.failed("connection refused")
            now[0] += 2
        assert link.snapshot()["down_since"] == 5.0
        link.up("hub:4222")
        link.lost()
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages[0][0] == "WARNING"
    assert messages[0][1].startswith("hub link down: cannot reach NATS at nats://hub:4222")
    reminders = [m for _, m in messages if m.startswith("hub link still down")]
    assert len(reminders) == 2  # at 60 s and 120 s
    assert ("INFO", "hub link up again: connected to NATS at hub:4222 after 180 s down") in messages
    assert messages[-1][1].startswith("hub link down: lost NATS at")
    assert len(messages) == 5
