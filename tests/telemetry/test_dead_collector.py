"""A collector or Loki that is down or hangs never fails a request; what it missed is counted.

Whether it slows requests is a speed figure: ``bench/telemetry_overhead.py --collector hanging``.
"""

from __future__ import annotations

from contextlib import ExitStack

import httpx

from tests.fixtures.agents import RunningAgent, run_agent
from tests.fixtures.names import MODEL
from tests.fixtures.waiting import poll
from tests.telemetry.receivers import closed_port_url, silent_server


def _answer(agent: RunningAgent) -> str:
    answer = httpx.post(
        f"{agent.v1}/completions",
        json={
            "model": MODEL,
            "prompt": "The capital of France is",
            "max_tokens": 8,
            "temperature": 0,
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-agl-tier"] == "edge"
    return str(answer.json()["choices"][0]["text"])


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


def test_requests_succeed_when_the_collector_is_dead_or_hangs_and_drops_are_counted() -> None:
    with ExitStack() as stack:
        hanging = stack.enter_context(silent_server())
        agents = {
            "off": stack.enter_context(run_agent(None)),
            "refused": stack.enter_context(
                run_agent(None, telemetry=_dead_telemetry(closed_port_url()))
            ),
            "hanging": stack.enter_context(run_agent(None, telemetry=_dead_telemetry(hanging))),
        }
        answers = {name: [_answer(agent) for _ in range(3)] for name, agent in agents.items()}
        # greedy decoding: telemetry, dead or not, changes no answer
        assert answers["refused"] == answers["hanging"] == answers["off"]

        def dropped(name: str) -> dict[str, int]:
            return agents[name].state.telemetry.drops.snapshot()

        # What the dead collectors should have received is counted as dropped, traces first.
        poll(lambda: dropped("refused")["traces"] > 0, 10, "refused trace exports to be counted")
        poll(lambda: dropped("hanging")["traces"] > 0, 10, "timed-out exports to be counted")
        assert agents["off"].state.telemetry.drops.snapshot() == dict.fromkeys(
            dropped("hanging"), 0
        )
