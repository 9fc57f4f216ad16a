"""A collector or Loki that is down or hangs never fails or slows a request."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx

from tests.fixtures.agents import RunningAgent, run_agent
from tests.fixtures.names import MODEL
from tests.telemetry.receivers import closed_port_url, silent_server


def _latency(agent: RunningAgent) -> float:
    started = time.perf_counter()
    answer = httpx.post(
        f"{agent.v1}/completions",
        json={"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8},
        timeout=30,
    )
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    return elapsed


def _dead_telemetry(url: str) -> dict[str, object]:
    return {
        "endpoint": url,
        "loki_url": f"{url}/loki/api/v1/push",
        "traces_sample_ratio": 1.0,
        "schedule_delay_s": 0.05,
        "metric_export_interval_s": 0.2,
        "loki_flush_interval_s": 0.1,
        "export_timeout_s": 1.0,
        "max_queue_size": 64,
        "max_export_batch_size": 16,
    }


def test_requests_succeed_without_added_latency_when_the_collector_is_dead_or_hangs() -> None:
    with ExitStack() as stack:
        hanging = stack.enter_context(silent_server())
        agents = {
            "off": stack.enter_context(run_agent(None)),
            "refused": stack.enter_context(
                run_agent(None, telemetry=_dead_telemetry(closed_port_url()))
            ),
            "hanging": stack.enter_context(run_agent(None, telemetry=_dead_telemetry(hanging))),
        }
        for agent in agents.values():
            _latency(agent)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in agents}
        for _ in range(7):  # alternate so machine noise hits every agent alike
            for name, agent in agents.items():
                times[name].append(_latency(agent))
        dropped = agents["hanging"].state.telemetry.drops.snapshot()
        started = time.perf_counter()
    shutdown_s = time.perf_counter() - started
    # A request that waited for the collector would take at least export_timeout_s (1 s)
    # longer than the quickest one without telemetry; none does. (Speed ratios: bench/.)
    floor = min(times["off"])
    for name in ("refused", "hanging"):
        assert max(times[name]) < floor + 0.9, times
    # 3 agents, each flushing at most export_timeout_s per signal (plus Loki's last push).
    assert shutdown_s < 30, shutdown_s
    # The hanging collector's exports timed out, and what they carried is counted as dropped.
    assert dropped["traces"] > 0, dropped
