"""Telemetry pieces on their own: config checks, JSON lines, sampling, Loki, plugin helpers."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from shared.telemetry import (
    Instruments,
    Telemetry,
    TelemetryConfig,
    plugin_span,
    record_plugin_error,
    setup_telemetry,
)
from shared.telemetry.drops import DropCounter
from shared.telemetry.logs import BoundedLokiHandler, InfoSampler, JsonFormatter
from tests.fixtures.waiting import poll
from tests.telemetry.receivers import (
    hanging_server,
    loki_receiver,
    otlp_receiver,
    silent_server,
)


def _record(level: int, msg: str = "hello") -> logging.LogRecord:
    return logging.LogRecord("t", level, __file__, 1, msg, None, None)


def test_config_refuses_out_of_range_sampling_and_unbounded_loki_labels() -> None:
    with pytest.raises(ValidationError):
        TelemetryConfig(traces_sample_ratio=0.01)
    with pytest.raises(ValidationError):
        TelemetryConfig(info_log_sample_ratio=0.5)
    with pytest.raises(ValidationError, match="new value on every line"):
        TelemetryConfig(loki_labels={"trace_id": "x"})
    with pytest.raises(ValidationError, match="http://"):
        TelemetryConfig(endpoint="collector:4318")
    assert not TelemetryConfig().enabled
    assert TelemetryConfig(endpoint="http://c:4318/").signal_url("logs") == "http://c:4318/v1/logs"


def test_telemetry_without_endpoint_is_off_and_passes_no_threads() -> None:
    telemetry = setup_telemetry(
        TelemetryConfig(), service_name="s", service_version="1", device_id="d", component="edge"
    )
    assert not telemetry.enabled
    with telemetry.tracer.start_as_current_span("x") as span:
        assert not span.is_recording()
    telemetry.shutdown()


def test_json_lines_carry_the_trace_and_span_id_of_the_current_span() -> None:
    with otlp_receiver() as otlp:
        telemetry = setup_telemetry(
            TelemetryConfig(endpoint=otlp.url, traces_sample_ratio=1.0),
            service_name="s",
            service_version="1",
            device_id="d",
            component="edge",
        )
        with telemetry.tracer.start_as_current_span("x") as span:
            line = json.loads(JsonFormatter({"component": "edge"}).format(_record(logging.INFO)))
            ctx = span.get_span_context()
        telemetry.shutdown()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert line["component"] == "edge" and line["message"] == "hello"


def test_info_sampler_keeps_every_warning_and_about_ratio_of_info_lines() -> None:
    sampler = InfoSampler(0.1)
    assert all(sampler.filter(_record(logging.WARNING)) for _ in range(200))
    kept = sum(sampler.filter(_record(logging.INFO)) for _ in range(5000))
    assert 300 < kept < 700


def test_loki_handler_never_blocks_and_counts_drops_when_loki_hangs() -> None:
    drops = DropCounter()
    with silent_server() as url:
        handler = BoundedLokiHandler(
            f"{url}/loki/api/v1/push",
            labels={"component": "edge"},
            flush_interval_s=0.05,
            timeout_s=0.5,
            max_queue=10,
            drops=drops,
        )
        for i in range(1000):
            handler.emit(_record(logging.WARNING, f"line {i}"))
        # at most max_queue lines wait; the rest were dropped at once, never queued or awaited
        assert handler.buffer.qsize() <= 10
        assert drops.snapshot()["loki"] >= 1000 - 10 - 10  # the queue, and one batch in flight
        handler.close()
        # Loki never answered: every line is counted as lost, none twice
        poll(
            lambda: drops.snapshot()["loki"] == 1000, 10, f"1000 dropped lines, {drops.snapshot()}"
        )


def test_loki_lines_have_bounded_labels_and_the_level() -> None:
    with loki_receiver() as loki:
        handler = BoundedLokiHandler(
            loki.url,
            labels={"component": "hub", "device": "h1"},
            flush_interval_s=0.05,
            timeout_s=2,
            max_queue=100,
            drops=DropCounter(),
        )
        handler.emit(_record(logging.ERROR, "boom"))
        handler.close()
    assert loki.lines[0][0] == {"component": "hub", "device": "h1", "level": "error"}
    assert loki.lines[0][1]["message"] == "boom"


def test_plugin_span_and_record_plugin_error_reach_the_trace_and_both_metric_sinks() -> None:
    with otlp_receiver() as otlp:
        telemetry = setup_telemetry(
            TelemetryConfig(endpoint=otlp.url, traces_sample_ratio=1.0),
            service_name="edge-agent",
            service_version="1",
            device_id="d",
            component="edge",
        )
        instruments = Instruments(telemetry, CollectorRegistry())
        with instruments.activate():
            with (
                telemetry.tracer.start_as_current_span("request"),
                plugin_span("pii", "on_request"),
            ):
                record_plugin_error("pii", "timeout")
            with pytest.raises(RuntimeError), plugin_span("pii", "on_response"):
                raise RuntimeError("plugin trap")
        scrape = generate_latest(instruments.registry).decode()
        telemetry.shutdown()
        assert otlp.wait_for(
            lambda: len(otlp.spans) >= 3 and "agl.plugin.errors" in otlp.metric_names
        )
    spans = {s.name: s for s in otlp.spans}
    assert spans["plugin on_request pii"].attributes["agl.plugin.hook"] == "on_request"
    assert spans["plugin on_request pii"].parent_span_id == spans["request"].span_id
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(scrape)
        for s in f.samples
    }
    assert samples[("agl_plugin_errors_total", (("kind", "timeout"), ("plugin", "pii")))] == 1


def test_disabled_telemetry_records_plugin_errors_in_prometheus() -> None:
    instruments = Instruments(Telemetry.disabled(), CollectorRegistry())
    with instruments.activate(), plugin_span("p", "on_request"):
        record_plugin_error("p", "error")
    assert b'agl_plugin_errors_total{kind="error",plugin="p"} 1.0' in generate_latest(
        instruments.registry
    )


def test_shutdown_with_a_hanging_collector_flushes_every_signal_side_by_side() -> None:
    with hanging_server() as collector:
        telemetry = setup_telemetry(
            TelemetryConfig(
                endpoint=collector.url,
                loki_url=f"{collector.url}/loki/api/v1/push",
                traces_sample_ratio=1.0,
                export_timeout_s=1.0,
                schedule_delay_s=0.05,
            ),
            service_name="s",
            service_version="1",
            device_id="d",
            component="edge",
        )
        logger = logging.getLogger("agl-test-shutdown")
        telemetry.install_logging(logger)
        for i in range(50):
            with telemetry.tracer.start_as_current_span(f"s{i}"):
                logger.warning("line %d", i)
        collector.mark()
        telemetry.shutdown()
        # Traces, metrics, OTLP logs and Loki each hang on the collector; flushed in a row,
        # each would open its connection after the previous one gave up (a peak of 1).
        assert collector.peak >= 2, collector.peak


def test_shipping_logs_to_loki_and_over_otlp_warns_of_duplicates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with otlp_receiver() as otlp, loki_receiver() as loki:
        telemetry = setup_telemetry(
            TelemetryConfig(endpoint=otlp.url, loki_url=loki.url),
            service_name="s",
            service_version="1",
            device_id="d",
            component="edge",
        )
        with caplog.at_level(logging.WARNING, logger="shared.telemetry"):
            telemetry.install_logging(logging.getLogger("agl-test-both"))
        telemetry.shutdown()
    assert any("twice" in r.message for r in caplog.records)


def test_an_info_line_outside_a_trace_is_sampled_once_for_every_sink() -> None:
    coin = iter([0.0, 0.99, 0.0, 0.99] * 10)
    sampler = InfoSampler(0.5, rng=lambda: next(coin))
    for _ in range(10):
        record = _record(logging.INFO)
        first = sampler.filter(record)
        assert all(sampler.filter(record) == first for _ in range(3))  # OTLP, Loki, …
