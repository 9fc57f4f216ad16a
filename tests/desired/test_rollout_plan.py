"""Staged rollout state machine (cloud_hub.control.rollout_plan), driven by heartbeat figures."""

from __future__ import annotations

import pytest

from cloud_hub.control.rollout_health import group_figures, judge, p95_from_buckets
from cloud_hub.control.rollout_plan import (
    Bounds,
    Counters,
    RolloutError,
    RolloutState,
    advance,
    parse_waves,
    wave_size,
)

BOUNDS = Bounds(window_s=60, max_error_rate=0.02, max_p95_ratio=1.5)
DEVICES = [f"d{i:02d}" for i in range(20)]


def _new(now: float = 0.0) -> RolloutState:
    return RolloutState.new(
        id="r1", target="fleet", kind="plugin", label="guard@aa", change={"plugins": {}},
        devices=DEVICES, waves=parse_waves("5%,25%,100%"), bounds=BOUNDS, now=now,
    )  # fmt: skip


def _figs(
    n: int, *, bad: set[str] = frozenset(), slow: set[str] = frozenset()
) -> dict[str, Counters]:  # type: ignore[assignment]
    out = {}
    for d in DEVICES:
        le = "2.0" if d in slow else "0.5"
        out[d] = Counters(
            requests=n, errors=n if d in bad else 0,
            latency_buckets={"0.5": 0 if d in slow else n, le: n, "+Inf": n},
        )  # fmt: skip
    return out


def test_waves_parse_and_bad_waves_say_how_to_write_them() -> None:
    assert parse_waves("5%, 25%,100%") == [0.05, 0.25, 1.0]
    for bad, msg in [
        ("5%,x", "not a percentage"),
        ("50%,25%,100%", "above the last"),
        ("5%,50%", "last wave must be 100%"),
    ]:
        with pytest.raises(RolloutError, match=msg):
            parse_waves(bad)
    assert [wave_size(s, 20) for s in (0.05, 0.25, 1.0)] == [1, 5, 20]
    assert wave_size(0.05, 3) == 1


def _converge(state: RolloutState, now: float, n: int) -> RolloutState:
    state, step = advance(state, now=now, figures=_figs(n))
    assert state.window_from == now and "run the change" in step.note
    return state


def test_healthy_waves_go_out_in_order_and_finish() -> None:
    state, step = advance(_new(), now=0, figures=_figs(0))
    assert state.wave == 0 and len(step.apply) == 1
    state = _converge(state, 1, 0)
    state, step = advance(state, now=30, figures=_figs(10))
    assert step.apply == [] and state.wave == 0  # window not over
    state, step = advance(state, now=62, figures=_figs(20))
    assert (
        state.wave == 1 and len(step.apply) == 4 and set(step.apply).isdisjoint(state.devices[:1])
    )
    state = _converge(state, 63, 20)
    state, step = advance(state, now=124, figures=_figs(40))
    assert state.wave == 2 and len(step.apply) == 15
    state = _converge(state, 125, 40)
    state, step = advance(state, now=186, figures=_figs(60))
    assert state.status == "succeeded" and step.finished and step.rollback == []


def test_the_window_waits_for_the_wave_to_run_the_change() -> None:
    state, step = advance(_new(), now=0, figures=_figs(0))
    canary = step.apply[0]
    waiting, step = advance(state, now=100, figures=_figs(10), applied={canary: False})
    assert waiting == state and step == type(step)()
    late, step = advance(state, now=500, figures=_figs(10), applied={canary: False})
    assert late.status == "rolled_back" and "did not apply the change within 300s" in late.reason
    broken, step = advance(state, now=1, figures=_figs(0), applied={canary: "sha mismatch"})
    assert broken.status == "rolled_back" and step.rollback == [canary]
    assert broken.reason == f"{canary} could not apply the change: sha mismatch"


def test_a_failing_first_wave_rolls_back_and_later_devices_never_get_it() -> None:
    state, step = advance(_new(), now=0, figures=_figs(0))
    canary = step.apply
    state = _converge(state, 1, 0)
    state, step = advance(state, now=62, figures=_figs(10, bad=set(canary)))
    assert state.status == "rolled_back" and step.rollback == canary and step.apply == []
    assert "error rate 1.000" in state.reason
    state, step = advance(state, now=200, figures=_figs(50))
    assert step.apply == [] and state.updated == []


def test_a_slow_wave_breaches_the_p95_ratio() -> None:
    state, step = advance(_new(), now=0, figures=_figs(0))
    slow = set(step.apply)
    state = _converge(state, 1, 0)
    state, step = advance(state, now=62, figures=_figs(10, slow=slow))
    assert state.status == "rolled_back" and "p95 latency 2.000s is 4.00x" in state.reason


def test_paused_rollouts_do_not_move() -> None:
    state, _ = advance(_new(), now=0, figures=_figs(0))
    paused = state.model_copy(update={"status": "paused"})
    again, step = advance(paused, now=1000, figures=_figs(10))
    assert again == paused and step.apply == []


def test_figures_count_from_the_window_start_and_a_restart_from_zero() -> None:
    before = {"a": Counters(requests=10, errors=1), "b": Counters(requests=50, errors=5)}
    now = {"a": Counters(requests=30, errors=3), "b": Counters(requests=4, errors=4)}
    figs = group_figures(["a", "b"], now, before)
    assert (figs.requests, figs.errors) == (24, 6)
    assert judge(figs, None, BOUNDS).ok is False
    assert p95_from_buckets({"0.1": 90, "0.5": 96, "+Inf": 100}) == 0.5
    assert p95_from_buckets({}) is None


def test_a_target_without_devices_is_refused() -> None:
    with pytest.raises(RolloutError, match="no enrolled devices"):
        RolloutState.new(
            id="r", target="site.x", kind="policy", label="p", change={}, devices=[],
            waves=[1.0], bounds=BOUNDS, now=0,
        )  # fmt: skip
