"""The device registry's records, derived liveness, fleet figures and the heartbeat rate limit.

Pure: no NATS, and the clock is always an argument.

    entry = with_heartbeat(None, "dev-1", beat, now=time.time())
    liveness(entry, now=time.time() + 35)     # 'stale' after 3 missed 10 s beats
    summary = fleet_summary([entry], now=...)  # devices by state, requests, tokens

A device is ``online`` while fewer than :data:`STALE_AFTER` beats are missing, ``stale`` from
then until :data:`OFFLINE_AFTER` beats are missing, then ``offline``; a device that was enrolled
but never sent a heartbeat is ``never_seen``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.heartbeat import Heartbeat

Liveness = Literal["online", "stale", "offline", "never_seen"]
STATES: tuple[Liveness, ...] = ("online", "stale", "offline", "never_seen")
#: Missed heartbeats after which a device is stale, then offline.
STALE_AFTER = 3
OFFLINE_AFTER = 10


class DeviceEntry(BaseModel):
    """One device in KV ``agl_devices`` (key: the device id)."""

    model_config = ConfigDict(extra="ignore")

    device: str
    site: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    enrolled_at: float | None = None
    revoked_at: float | None = None
    last_seen: float | None = None
    heartbeat: Heartbeat | None = None


def with_heartbeat(
    entry: DeviceEntry | None, device: str, beat: Heartbeat, *, now: float
) -> DeviceEntry:
    """``entry`` (or a new one: a device seen before it was recorded) with ``beat`` in it."""
    base = entry or DeviceEntry(device=device)
    return base.model_copy(update={"last_seen": now, "heartbeat": beat})


def liveness(entry: DeviceEntry, *, now: float) -> Liveness:
    """online / stale / offline from the time since the last beat and the device's interval."""
    if entry.last_seen is None or entry.heartbeat is None:
        return "never_seen"
    missed = (now - entry.last_seen) / entry.heartbeat.interval_s
    if missed >= OFFLINE_AFTER:
        return "offline"
    return "stale" if missed >= STALE_AFTER else "online"


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


def fleet_summary(entries: Iterable[DeviceEntry], *, now: float) -> dict[str, Any]:
    """Devices by state, requests and escalation share by reason, tokens by tier.

    The counters are each device's latest heartbeat (counts since that agent started).
    """
    states = dict.fromkeys(STATES, 0)
    requests: dict[str, int] = {}
    escalations: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for entry in entries:
        states[liveness(entry, now=now)] += 1
        if entry.heartbeat is not None:
            _add(requests, entry.heartbeat.requests_by_reason)
            _add(escalations, entry.heartbeat.escalations_by_reason)
            _add(tokens, entry.heartbeat.tokens_by_tier)
    total = sum(requests.values())
    escalated = sum(escalations.values())
    return {
        "devices": {"total": sum(states.values()), **states},
        "requests": {"total": total, "by_reason": dict(sorted(requests.items()))},
        "escalations": {
            "total": escalated,
            "share": round(escalated / total, 4) if total else 0.0,
            "by_reason": {
                reason: {
                    "count": n,
                    "share": round(n / requests[reason], 4) if requests.get(reason) else 0.0,
                }
                for reason, n in sorted(escalations.items())
            },
        },
        "tokens": {"by_tier": dict(sorted(tokens.items()))},
    }


class RateLimit:
    """A token bucket per device: ``burst`` beats back to back, then one per ``every_s``.

    At most ``max_devices`` buckets are kept (the least recently used goes first), so a flood
    of made-up device ids cannot grow memory without bound.
    """

    def __init__(self, *, burst: int, every_s: float, max_devices: int = 100_000) -> None:
        self.burst = burst
        self.every_s = every_s
        self.max_devices = max_devices
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, device: str, *, now: float) -> bool:
        """Take one token from ``device``'s bucket; False when it is empty."""
        tokens, at = self._buckets.pop(device, (float(self.burst), now))
        if self.every_s > 0:
            tokens = min(float(self.burst), tokens + (now - at) / self.every_s)
        else:
            tokens = float(self.burst)
        allowed = tokens >= 1.0
        self._buckets[device] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_devices:
            self._buckets.popitem(last=False)
        return allowed
