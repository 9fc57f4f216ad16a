"""Online tuning inside a real agent: every cascade judgement feeds the tuner, whose threshold is
the one the cascade uses and the one the heartbeat reports (real agent, echo hub, nats-server)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.control.heartbeat import Heartbeats
from tests.fixtures.agents import edge
from tests.fixtures.calls import chat, oai
from tests.fixtures.hubs import hub_in_thread, hub_settings

from .conftest import RestartableNats

PROMPTS = ["Say hi.", "Name a colour.", "What is 2+2?", "Write one word.", "Count to three."]


def test_the_agent_tunes_its_threshold_from_its_own_judgements(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    cascade = {"enabled": True, "target_escalation_share": 0.4, "tuning_window": 20, "first_k": 4}
    with hub_in_thread(hub_settings(js_nats.url)), edge(
        js_nats.url, router={"cascade": cascade}, desired={"cache_dir": str(tmp_path)}
    ) as agent, oai(agent) as client:  # fmt: skip
        tuner = agent.state.cascade_tuner
        assert tuner is not None and tuner.samples == 0
        reasons = [chat(client, PROMPTS[i % 5] + f" ({i})", max_tokens=6)[0][1] for i in range(30)]
        assert tuner.samples == 20  # the window is full: 30 judged, the oldest 10 left it
        assert set(reasons) <= {"default", "confidence"}
        assert tuner.measured_share == sum(r == "confidence" for r in reasons[-20:]) / 20
        assert -6.0 <= tuner.threshold <= -0.05
        assert agent.state.uplink is not None
        beat = Heartbeats(agent.state, agent.state.uplink, interval_s=10).build()
        assert (
            beat.cascade_threshold == tuner.threshold and beat.tuned_share == tuner.measured_share
        )
