"""`edge-agent calibrate` picks a threshold that escalates the target share on the serving path."""

from __future__ import annotations

import json
from pathlib import Path

import openai
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.router.cascade import Confidence, judge
from edge_agent.router.policy import CascadeConfig
from tests.fixtures.names import MODEL

PROMPTS = Path(__file__).parent.parent / "data" / "calibration_prompts.jsonl"


def test_calibrated_threshold_escalates_the_target_share(client: openai.OpenAI) -> None:
    result = CliRunner().invoke(
        main,
        ["calibrate", "--target-escalation", "0.2", "--max-tokens", "12", "--json", str(PROMPTS)],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["prompts"] == 20
    assert abs(out["escalated_share"] - 0.2) <= 0.05

    cfg = CascadeConfig(enabled=True, min_mean_logprob=out["threshold"], min_token_logprob=-100)
    escalated = 0
    for line in PROMPTS.read_text().splitlines():
        record = json.loads(line)
        messages = record.get("messages") or [{"role": "user", "content": record["prompt"]}]
        answer = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=12, temperature=0, logprobs=True
        )
        logprobs = [t.logprob for t in answer.choices[0].logprobs.content]  # type: ignore[union-attr]
        escalated += judge(Confidence.from_logprobs(logprobs), cfg).escalate
    assert abs(escalated / 20 - 0.2) <= 0.05


def test_calibrate_rejects_bad_files_and_targets(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    result = CliRunner().invoke(main, ["calibrate", str(bad)])
    assert result.exit_code == 1 and "line 2" in result.output
    result = CliRunner().invoke(main, ["calibrate", "--target-escalation", "1.5", str(PROMPTS)])
    assert result.exit_code == 2 and "target-escalation" in result.output
