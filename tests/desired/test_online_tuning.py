"""Online threshold tuning (edge_agent.router.online_tuning): a target share on drifting traffic."""

from __future__ import annotations

import random

import pytest

from edge_agent.router.online_tuning import ThresholdTuner
from edge_agent.router.policy import CascadeConfig


def _drifting_scores(n: int, seed: int = 7) -> list[float]:
    """Mean logprobs of a mix whose share of hard prompts drifts from 10 % to 70 %."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hard_share = 0.1 + 0.6 * i / n
        if rng.random() < hard_share:
            out.append(rng.gauss(-2.2, 0.6))
        else:
            out.append(rng.gauss(-0.4, 0.2))
    return out


def _run(tuner: ThresholdTuner | None, scores: list[float], fixed: float) -> list[bool]:
    escalated = []
    for score in scores:
        threshold = tuner.threshold if tuner is not None else fixed
        esc = score < threshold
        if tuner is not None:
            tuner.observe(score, escalated=esc)
        escalated.append(esc)
    return escalated


def test_tuned_share_stays_within_3pp_of_the_target_while_the_mix_drifts() -> None:
    scores = _drifting_scores(40_000)
    tuner = ThresholdTuner.from_config(
        CascadeConfig(enabled=True, target_escalation_share=0.2, tuning_window=500)
    )
    escalated = _run(tuner, scores, fixed=0.0)
    block = 2000
    shares = [sum(escalated[i : i + block]) / block for i in range(block, len(scores), block)]
    assert all(abs(s - 0.2) <= 0.03 for s in shares), shares
    assert abs(tuner.measured_share - 0.2) <= 0.03


def test_a_fixed_threshold_does_not_hold_the_share_on_the_same_traffic() -> None:
    # The check above can fail: a threshold fixed where the start of the mix gives 20 % drifts off.
    scores = _drifting_scores(40_000)
    start = sorted(scores[:2000])[400]
    escalated = _run(None, scores, fixed=start)
    assert sum(escalated[-2000:]) / 2000 > 0.5


def test_the_threshold_stays_within_the_policy_bounds() -> None:
    tuner = ThresholdTuner(share=0.2, window=100, lower=-3.0, upper=-0.5, min_samples=10)
    for _ in range(100):
        tuner.observe(-9.0, escalated=True)
    assert tuner.threshold == -3.0
    for _ in range(100):
        tuner.observe(-0.01, escalated=False)
    assert tuner.threshold == -0.5
    assert tuner.measured_share == 0.0
    assert tuner.samples == 100


def test_before_enough_scores_the_fixed_threshold_applies_and_nan_is_ignored() -> None:
    cfg = CascadeConfig(enabled=True, min_mean_logprob=-1.3, target_escalation_share=0.3)
    tuner = ThresholdTuner.from_config(cfg)
    tuner.observe(float("nan"), escalated=True)
    assert tuner.samples == 0
    assert tuner.cascade(cfg).min_mean_logprob == -1.3
    assert tuner.fits(cfg) and not tuner.fits(cfg.model_copy(update={"tuning_window": 50}))


def test_bad_tuning_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="target_escalation_share is not set"):
        ThresholdTuner.from_config(CascadeConfig())
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        ThresholdTuner(share=1.0)
