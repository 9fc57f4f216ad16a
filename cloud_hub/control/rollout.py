"""The rollout controller: stores rollouts in KV ``agl_rollouts`` and drives them (NATS I/O).

    state = await start_rollout(nc, target="fleet", kind="plugin", label="guard@3f2a…",
                                change={"plugins": {...}}, waves=[0.05, 0.25, 1.0], bounds=...)
    while not done:
        done = await tick(nc, state.target)     # applies waves, judges windows, rolls back
        await asyncio.sleep(1)

One key per target (``fleet``, ``site.<name>``) holds its rollout, so a second active rollout on a
target is refused. Each tick reads the devices' heartbeat counters from the registry, runs the
pure state machine (``rollout_plan.advance``) and writes the records of the devices it moved:
updated devices get the change as an extra layer on top of their merged state; a rollback writes
the record without it (the revision they had before). A finished rollout folds its change into
the target's layer. Every step goes to the audit stream.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from cloud_hub.control.audit import audit
from cloud_hub.control.kv_keys import bucket_keys
from cloud_hub.control.policy import (
    current_record,
    materialize_all,
    open_config,
    read_layer,
    set_layer,
)
from cloud_hub.control.registry import Registry
from cloud_hub.control.rollout_plan import (
    ACTIVE,
    Bounds,
    Counters,
    RolloutError,
    RolloutState,
    advance,
)
from shared.desired import LAYER_PREFIX, merge
from shared.heartbeat import Heartbeat

__all__ = ["active_overlays", "get_rollout", "set_status", "start_rollout", "tick"]

ROLLOUT_BUCKET = "agl_rollouts"
#: States ``agl_rollouts`` keeps per target: every step is a put, so this is the last few steps
#: of the current rollout (the audit stream AGL_AUDIT keeps the trail of every step).
ROLLOUT_HISTORY = 10


async def _bucket(nc: Client) -> KeyValue:
    js = nc.jetstream()
    try:
        return await js.key_value(ROLLOUT_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=ROLLOUT_BUCKET, history=ROLLOUT_HISTORY)
        )


async def get_rollout(nc: Client, target: str) -> RolloutState | None:
    """The rollout stored for ``target`` (active or finished), or None."""
    kv = await _bucket(nc)
    try:
        entry = await kv.get(target)
    except nats.js.errors.KeyNotFoundError:
        return None
    return RolloutState.model_validate_json(entry.value) if entry.value else None


async def _save(nc: Client, state: RolloutState) -> None:
    await (await _bucket(nc)).put(state.target, state.model_dump_json().encode())


async def active_overlays(nc: Client) -> dict[str, list[dict[str, Any]]]:
    """Per device, the changes of active rollouts that have reached it."""
    await _bucket(nc)
    out: dict[str, list[dict[str, Any]]] = {}
    for key in await bucket_keys(nc, ROLLOUT_BUCKET):
        state = await get_rollout(nc, key)
        if state is not None and state.status in ACTIVE:
            for device in state.updated:
                out.setdefault(device, []).append(state.change)
    return out


async def _figures(nc: Client) -> tuple[dict[str, Counters], dict[str, Heartbeat]]:
    registry = await Registry.open(nc)
    counters, beats = {}, {}
    for entry in await registry.entries():
        beat = entry.heartbeat
        if beat is not None:
            beats[entry.device] = beat
            counters[entry.device] = Counters(
                requests=beat.http_requests, errors=beat.http_errors,
                latency_buckets=dict(beat.latency_buckets),
            )  # fmt: skip
    return counters, beats


async def _applied(
    nc: Client, devices: list[str], beats: dict[str, Heartbeat]
) -> dict[str, bool | str]:
    """Per device: runs its current record (True), not yet (False), or the apply error."""
    kv = await open_config(nc)
    out: dict[str, bool | str] = {}
    for device in devices:
        record, beat = await current_record(kv, device), beats.get(device)
        if record is None or beat is None:
            out[device] = False
        elif beat.applied_revision == record.revision:
            out[device] = True
        elif (beat.apply_error or "").startswith(f"revision {record.revision}:"):
            out[device] = str(beat.apply_error)
        else:
            out[device] = False
    return out


async def target_devices(nc: Client, target: str) -> list[str]:
    """Registered, unrevoked devices of the target (the fleet or one site)."""
    registry = await Registry.open(nc)
    site = target.removeprefix("site.") if target.startswith("site.") else None
    return [
        e.device
        for e in await registry.entries()
        if e.revoked_at is None and (site is None or e.site == site)
    ]


def _site_flag(target: str) -> str:
    """The ``hubctl rollout`` flag that names TARGET: `` --site NAME``, or none for the fleet."""
    return f" --site {target.removeprefix('site.')}" if target.startswith("site.") else ""


async def start_rollout(
    nc: Client,
    *,
    target: str,
    kind: Literal["plugin", "model", "policy"],
    label: str,
    change: dict[str, Any],
    waves: list[float],
    bounds: Bounds,
) -> RolloutState:
    """Store a new running rollout; RolloutError when the target already has an active one."""
    existing = await get_rollout(nc, target)
    if existing is not None and existing.status in ACTIVE:
        raise RolloutError(
            f"rollout {existing.id} ({existing.label}) is {existing.status} on {target}; wait "
            f"for it, or `hubctl rollout abort{_site_flag(target)}` first"
        )
    state = RolloutState.new(
        id=uuid.uuid4().hex[:8], target=target, kind=kind, label=label, change=change,
        devices=await target_devices(nc, target), waves=waves, bounds=bounds, now=time.time(),
    )  # fmt: skip
    kv = await _bucket(nc)
    if existing is None:
        try:
            await kv.create(target, state.model_dump_json().encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            raise RolloutError(f"another rollout on {target} started just now") from None
    else:
        await _save(nc, state)
    await audit(nc.jetstream(), "rollout.start", rollout=state.id, target=target, label=label,
                devices=len(state.devices), waves=waves)  # fmt: skip
    return state


async def _rematerialize(nc: Client, devices: list[str]) -> None:
    kv = await open_config(nc)
    await materialize_all(nc, kv, only=devices, overlays=await active_overlays(nc))


async def tick(nc: Client, target: str, *, now: float | None = None) -> RolloutState | None:
    """Advance the target's rollout by one step; the state after it."""
    state = await get_rollout(nc, target)
    if state is None or state.status != "running":
        return state
    counters, beats = await _figures(nc)
    applied = await _applied(nc, state.updated, beats)
    at = time.time() if now is None else now
    new, step = advance(state, now=at, figures=counters, applied=applied)
    if new == state:
        return state
    await _save(nc, new)
    js = nc.jetstream()
    if step.apply or step.rollback:
        await _rematerialize(nc, [*step.apply, *step.rollback])
    event = "rollout.rollback" if step.rollback else "rollout.step"
    await audit(js, event, rollout=new.id, target=target, note=step.note,
                applied=step.apply, rolled_back=step.rollback, status=new.status)  # fmt: skip
    if new.status == "succeeded":
        await _fold(nc, new)
    return new


async def _fold(nc: Client, state: RolloutState) -> None:
    """Make a finished rollout's change part of its target's layer."""
    kv = await open_config(nc)
    key = LAYER_PREFIX + state.target
    await set_layer(kv, key, merge([await read_layer(kv, key), state.change]))
    await materialize_all(nc, kv, overlays=await active_overlays(nc))
    await audit(nc.jetstream(), "policy.set", target=state.target, source=f"rollout {state.id}")


async def set_status(
    nc: Client, target: str, status: Literal["running", "paused", "aborted"]
) -> RolloutState:
    """Pause, resume or abort (abort rolls the updated devices back)."""
    state = await get_rollout(nc, target)
    if state is None or state.status not in ACTIVE:
        raise RolloutError(
            f"no active rollout on {target}; see `hubctl rollout status{_site_flag(target)}`"
        )
    updated = state.updated
    new = state.model_copy(update={"status": status, "reason": f"{status} by operator"})
    await _save(nc, new)
    if status == "aborted" and updated:
        await _rematerialize(nc, updated)
    await audit(nc.jetstream(), f"rollout.{status}", rollout=new.id, target=target,
                rolled_back=updated if status == "aborted" else [])  # fmt: skip
    return new
