"""Cascade judging on token logprobs, and the streaming first-K buffer."""

from __future__ import annotations

import math

import pytest

from edge_agent.router import CascadeConfig, Confidence, FirstKBuffer, judge

CFG = CascadeConfig(enabled=True, min_mean_logprob=-1.0, min_token_logprob=-5.0, first_k=3)


def test_confidence_summarises_mean_min_and_count() -> None:
    c = Confidence.from_logprobs([-0.5, -1.5, -1.0])
    assert c.mean == pytest.approx(-1.0)
    assert (c.min, c.n) == (-1.5, 3)


def test_empty_answer_is_kept() -> None:
    c = Confidence.from_logprobs([])
    assert (c.mean, c.min, c.n) == (0.0, 0.0, 0)
    v = judge(c, CFG)
    assert not v.escalate and v.score == 0.0 and v.threshold == -1.0


def test_confident_answer_is_kept_with_its_score() -> None:
    v = judge(Confidence.from_logprobs([-0.1, -0.2, -0.9]), CFG)
    assert not v.escalate
    assert v.score == pytest.approx(-0.4)
    assert v.threshold == -1.0


def test_low_mean_escalates() -> None:
    v = judge(Confidence.from_logprobs([-1.2, -1.1, -1.3]), CFG)
    assert v.escalate and "mean" in v.detail


def test_mean_exactly_at_the_threshold_is_kept() -> None:
    assert not judge(Confidence(mean=-1.0, min=-1.0, n=2), CFG).escalate


def test_one_very_unsure_token_escalates_a_confident_mean() -> None:
    v = judge(Confidence.from_logprobs([-0.01] * 20 + [-6.0]), CFG)
    assert v.escalate and "token" in v.detail
    assert v.score > CFG.min_mean_logprob


def test_zero_probability_token_escalates_and_nan_is_refused() -> None:
    assert judge(Confidence.from_logprobs([-0.1, -math.inf]), CFG).escalate
    with pytest.raises(ValueError, match="NaN"):
        Confidence.from_logprobs([-0.1, math.nan])


def test_first_k_buffer_holds_k_pieces_then_is_ready() -> None:
    buf = FirstKBuffer(k=CFG.first_k)
    assert buf.push("Hel", -0.1) is False
    assert buf.push("lo", -0.2) is False
    assert buf.ready is False
    assert buf.push(" world", -0.3) is True
    assert buf.logprobs == [-0.1, -0.2, -0.3]
    assert not buf.decide(CFG).escalate
    assert buf.release() == ["Hel", "lo", " world"]
    assert buf.release() == []


def test_first_k_buffer_escalates_unsure_openings() -> None:
    buf = FirstKBuffer(k=2)
    buf.push("Um", -3.0)
    buf.push("...", -2.5)
    assert buf.decide(CFG).escalate


def test_first_k_buffer_judges_a_short_answer_once_generation_ends() -> None:
    buf = FirstKBuffer(k=8)
    buf.push("Yes", -0.05)
    with pytest.raises(RuntimeError, match="1 of 8 pieces"):
        buf.decide(CFG)
    buf.end()
    assert buf.ready
    v = buf.decide(CFG)
    assert not v.escalate and v.score == pytest.approx(-0.05)
    assert buf.release() == ["Yes"]


def test_first_k_buffer_that_ends_empty_is_kept() -> None:
    buf = FirstKBuffer(k=4)
    buf.end()
    assert not buf.decide(CFG).escalate
    assert buf.release() == []


def test_first_k_buffer_needs_a_positive_k() -> None:
    with pytest.raises(ValueError, match="k >= 1"):
        FirstKBuffer(k=0)
