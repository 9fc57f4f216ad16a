"""Staged rollouts (pure): waves, the health check between waves, and the state machine.

A rollout moves one change (a plugin, a model or a policy layer) onto the devices of a target
(the fleet or one site) wave by wave. Each wave adds devices until its share of the target has
the change; after ``window_s`` the updated devices' figures over the window are compared with
the devices not updated yet. A breach rolls every updated device back.

    plan = RolloutState.new(id="r1", target="fleet", devices=[...], waves=parse_waves("5%,100%"),
                            bounds=Bounds(window_s=60, max_error_rate=0.02, max_p95_ratio=1.5), ...)
    plan, step = advance(plan, now=time.time(), figures=current_figures)
    # step.apply: devices to update now; step.rollback: devices to put back; step.note: for the audit
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud_hub.control.rollout_health import Bounds, Counters, group_figures, judge
from cloud_hub.errors import HubError

__all__ = [
    "ACTIVE",
    "Bounds",
    "Counters",
    "RolloutError",
    "RolloutState",
    "Step",
    "advance",
    "parse_waves",
    "wave_size",
]

Status = Literal["running", "paused", "succeeded", "rolled_back", "aborted"]
#: A rollout in one of these holds its target: a second one there is refused.
ACTIVE: tuple[Status, ...] = ("running", "paused")


class RolloutError(HubError):
    """A rollout cannot start or change state (bad waves, a second one on a target …)."""


def parse_waves(text: str) -> list[float]:
    """``"5%,25%,100%"`` → ``[0.05, 0.25, 1.0]``: increasing shares ending at 100 %."""
    shares: list[float] = []
    for part in text.split(","):
        part = part.strip().removesuffix("%")
        try:
            value = float(part) / 100
        except ValueError:
            raise RolloutError(
                f"--waves {text!r}: {part!r} is not a percentage; write e.g. 5%,25%,100%"
            ) from None
        if not 0 < value <= 1 or (shares and value <= shares[-1]):
            raise RolloutError(
                f"--waves {text!r}: each wave must be above the last and at most 100%"
            )
        shares.append(value)
    if not shares or shares[-1] != 1.0:
        raise RolloutError(f"--waves {text!r}: the last wave must be 100%")
    return shares


def wave_size(share: float, total: int) -> int:
    """Devices updated once a wave of ``share`` is done: at least one, at most all."""
    return min(total, max(1, math.ceil(share * total - 1e-9))) if total else 0


def device_order(devices: Sequence[str], rollout_id: str) -> list[str]:
    """A stable, rollout-specific shuffle, so the canaries are not always the same devices."""
    return sorted(devices, key=lambda d: hashlib.sha256(f"{rollout_id}:{d}".encode()).digest())


class RolloutState(BaseModel):
    """A rollout as stored in KV (``agl_rollouts``), read by every ``hubctl rollout`` command."""

    model_config = ConfigDict(frozen=True)

    id: str
    target: str = Field(description="`fleet` or `site.<name>`.")
    kind: Literal["plugin", "model", "policy"]
    label: str = Field(description="What is rolled out, e.g. pii_redact@3f2a….")
    change: dict[str, Any] = Field(description="The layer patch the updated devices get.")
    devices: list[str]
    waves: list[float]
    window_s: float
    max_error_rate: float
    max_p95_ratio: float
    wave: int = -1
    """Index of the wave being watched; -1 before the first."""
    wave_started_at: float | None = None
    window_from: float | None = None
    """When every device of the current wave ran the change (its health window starts)."""
    status: Status = "running"
    reason: str = ""
    snapshot: dict[str, Counters] = Field(default_factory=dict)
    started_at: float = 0.0

    @classmethod
    def new(
        cls,
        *,
        id: str,
        target: str,
        kind: Literal["plugin", "model", "policy"],
        label: str,
        change: dict[str, Any],
        devices: Sequence[str],
        waves: Sequence[float],
        bounds: Bounds,
        now: float,
    ) -> RolloutState:
        """A running rollout with the target's devices in a rollout-specific order."""
        if not devices:
            raise RolloutError(f"target {target} has no enrolled devices; nothing to roll out to")
        return cls(
            id=id, target=target, kind=kind, label=label, change=change,
            devices=device_order(devices, id), waves=list(waves), window_s=bounds.window_s,
            max_error_rate=bounds.max_error_rate, max_p95_ratio=bounds.max_p95_ratio,
            started_at=now,
        )  # fmt: skip

    @property
    def converge_s(self) -> float:
        """How long a wave's devices may take to apply the change before it counts as failed:
        ``max(5 × window_s, 120 s)``, 300 s with the default 60 s window. That is shorter than
        a device's artifact download deadline (600 s, ``ArtifactCache.fetch``): a wave whose
        model takes longer to download is rolled back; start it with a longer ``--window``."""
        return max(5 * self.window_s, 120.0)

    @property
    def bounds(self) -> Bounds:
        """The health bounds as one value."""
        return Bounds(self.window_s, self.max_error_rate, self.max_p95_ratio)

    @property
    def updated(self) -> list[str]:
        """Devices that have the change now (all waves up to the current one)."""
        if self.wave < 0 or self.status in ("rolled_back", "aborted"):
            return []
        return self.devices[: wave_size(self.waves[self.wave], len(self.devices))]

    @property
    def pending(self) -> list[str]:
        """Devices not updated yet."""
        return self.devices[len(self.updated) :]


@dataclass(frozen=True)
class Step:
    """What the controller must do after :func:`advance`."""

    apply: list[str] = field(default_factory=list)
    rollback: list[str] = field(default_factory=list)
    note: str = ""
    finished: bool = False


def _rollback(state: RolloutState, reason: str) -> tuple[RolloutState, Step]:
    done = state.model_copy(update={"status": "rolled_back", "reason": reason})
    note = f"wave {state.wave + 1} breached: {reason}; rolling back"
    return done, Step(rollback=state.updated, note=note, finished=True)


def advance(
    state: RolloutState,
    *,
    now: float,
    figures: Mapping[str, Counters],
    applied: Mapping[str, bool | str] | None = None,
) -> tuple[RolloutState, Step]:
    """One tick: start the first wave, judge a wave whose window is over, or wait.

    ``applied`` says, per updated device, whether it runs the change (True), not yet (False) or
    could not apply it (the error). The window only counts once every updated device runs it;
    an apply error is a breach; a wave that does not converge within ``converge_s`` is one too.
    """
    if state.status != "running":
        return state, Step()
    if state.wave >= 0:
        assert state.wave_started_at is not None
        status = {d: (applied or {}).get(d, True) for d in state.updated}
        failed = {d: v for d, v in status.items() if isinstance(v, str)}
        if failed:
            device, error = sorted(failed.items())[0]
            return _rollback(state, f"{device} could not apply the change: {error}")
        if not all(status.values()):
            if now - state.wave_started_at > state.converge_s:
                waiting = sorted(d for d, v in status.items() if v is not True)
                return _rollback(
                    state, f"{len(waiting)} device(s) did not apply the change within "
                    f"{state.converge_s:g}s ({', '.join(waiting[:5])})"
                )  # fmt: skip
            return state, Step()
        if state.window_from is None:  # converged just now: the window starts here
            return state.model_copy(update={"window_from": now, "snapshot": dict(figures)}), Step(
                note=f"wave {state.wave + 1}: all {len(status)} updated devices run the change"
            )
        if now - state.window_from < state.window_s:
            return state, Step()
        updated, pending = state.updated, state.pending
        verdict = judge(
            group_figures(updated, figures, state.snapshot),
            group_figures(pending, figures, state.snapshot) if pending else None,
            state.bounds,
        )
        if not verdict.ok:
            return _rollback(state, verdict.reason)
        if state.wave == len(state.waves) - 1:
            done = state.model_copy(update={"status": "succeeded", "reason": verdict.reason})
            return done, Step(note=f"last wave healthy: {verdict.reason}", finished=True)
    before = set(state.updated)
    nxt = state.model_copy(
        update={"wave": state.wave + 1, "wave_started_at": now, "window_from": None,
                "snapshot": dict(figures)}
    )  # fmt: skip
    fresh = [d for d in nxt.updated if d not in before]
    share = f"{nxt.waves[nxt.wave]:.0%}"
    return nxt, Step(apply=fresh, note=f"wave {nxt.wave + 1} ({share}): {len(fresh)} devices")
