"""Threshold calibration for a target escalation share, and the prompts JSONL reader."""

from __future__ import annotations

import math
import random

import pytest

from edge_agent.router import CascadeConfig, Confidence, calibrate, judge, read_prompts_jsonl
from edge_agent.router.calibrate import PromptFileError
from shared.errors import ConfigError

SCORES = [-(i / 37.0) for i in range(100)]  # 100 distinct mean logprobs in [-2.68, 0]


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2, 0.5, 0.9])
def test_calibrate_hits_the_target_share_on_distinct_scores(target: float) -> None:
    shuffled = SCORES[:]
    random.Random(7).shuffle(shuffled)
    result = calibrate(shuffled, target)
    assert result.n == 100
    assert abs(result.escalated_share - target) <= 0.02
    below = sum(s < result.threshold for s in SCORES) / len(SCORES)
    assert below == result.escalated_share


def test_the_lowest_scores_escalate_through_the_cascade_judge() -> None:
    result = calibrate(SCORES, 0.2)
    cfg = CascadeConfig(enabled=True, min_mean_logprob=result.threshold, min_token_logprob=-1e9)
    escalated = [s for s in SCORES if judge(Confidence(mean=s, min=s, n=1), cfg).escalate]
    assert len(escalated) == 20
    assert max(escalated) < min(s for s in SCORES if s not in escalated)


def test_threshold_sits_between_the_last_escalated_and_first_kept_score() -> None:
    result = calibrate([-3.0, -2.0, -1.0, -0.5], 0.5)
    assert result.threshold == pytest.approx(-1.5)
    assert result.escalated_share == 0.5


def test_ties_escalate_together_and_the_nearest_share_wins() -> None:
    scores = [-1.0] * 30 + [-0.5] * 70
    result = calibrate(scores, 0.2)  # 0.0 and 0.3 are possible; 0.3 is nearer
    assert result.escalated_share == pytest.approx(0.3)
    assert -1.0 < result.threshold < -0.5
    all_tied = calibrate([-0.7] * 10, 0.4)
    assert all_tied.escalated_share == 0.0


def test_one_score_and_a_high_target_escalates_it() -> None:
    result = calibrate([-0.3], 0.9)
    assert result.escalated_share == 1.0
    assert result.threshold > -0.3


@pytest.mark.parametrize("target", [0, 1, -0.1, 1.5, math.nan])
def test_target_outside_zero_one_is_refused(target: float) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        calibrate(SCORES, target)


def test_no_scores_is_refused() -> None:
    with pytest.raises(ConfigError, match="no scores"):
        calibrate([], 0.2)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_refused_with_their_index(bad: float) -> None:
    with pytest.raises(ConfigError, match="index 2"):
        calibrate([-1.0, -0.5, bad], 0.2)


def test_read_prompts_accepts_prompt_and_messages_lines_and_skips_blank_ones() -> None:
    text = (
        '{"prompt": "What is 2+2?", "id": 1}\n'
        "\n"
        '{"messages": [{"role": "system", "content": "Be brief."}, '
        '{"role": "user", "content": "Hi"}]}\n'
    )
    records = read_prompts_jsonl(text)
    assert len(records) == 2
    assert records[0].prompt == "What is 2+2?"
    assert [(m.role, m.content) for m in records[0].as_messages()] == [("user", "What is 2+2?")]
    assert [m.role for m in records[1].as_messages()] == ["system", "user"]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object, got list"),
        ('{"id": 3}', "exactly one of"),
        ('{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}', "exactly one of"),
        ('{"prompt": 42}', "prompt"),
        ('{"messages": []}', "messages"),
        ('{"messages": [{"content": "no role"}]}', "role"),
    ],
)
def test_bad_lines_are_reported_with_their_line_number(line: str, problem: str) -> None:
    text = '{"prompt": "ok"}\n\n' + line + "\n"
    with pytest.raises(PromptFileError, match=problem) as info:
        read_prompts_jsonl(text)
    assert info.value.line == 3
    assert str(info.value).startswith("line 3: ")
    assert isinstance(info.value, ConfigError)


def test_a_file_without_prompts_is_refused() -> None:
    with pytest.raises(ConfigError, match="no prompts"):
        read_prompts_jsonl("\n  \n")
