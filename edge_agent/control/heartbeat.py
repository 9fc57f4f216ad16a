"""Heartbeats: every ``hub.heartbeat_s`` the agent tells the hub how it is doing.

A heartbeat (:class:`shared.heartbeat.Heartbeat`) goes to ``agl.v1.dev.<device>.hb`` and holds
the agent version, models and plugins with their sha256, the config revision, queue depth,
recent tokens/s, the escalation share, the breaker state and uptime, plus the counters that
``hubctl stats`` sums (requests and escalations by reason, tokens by tier).

    beats = Heartbeats(state, uplink, interval_s=10)
    beats.start()            # a task; a beat is skipped (not queued) while the link is down
    await beats.stop()

:func:`build_heartbeat` is pure: it turns the agent's figures into one message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from edge_agent import __version__
from edge_agent.api.state import AgentState
from edge_agent.uplink.backoff import jittered
from edge_agent.uplink.client import Uplink
from shared.heartbeat import Artifact, Heartbeat, encode_heartbeat
from shared.tasks import stop_tasks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Totals:
    """Counters since the agent started, read from its Prometheus registry."""

    requests_by_reason: dict[str, int] = field(default_factory=dict)
    escalations_by_reason: dict[str, int] = field(default_factory=dict)
    tokens_by_tier: dict[str, int] = field(default_factory=dict)
    generated: int = 0
    http: tuple[int, int] = (0, 0)
    """HTTP requests answered and, of them, 5xx answers."""
    latency_buckets: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Routed requests of every tier."""
        return sum(self.requests_by_reason.values())


def read_totals(registry: CollectorRegistry) -> Totals:
    """Routing decisions, escalations and tokens from the agent's ``/metrics`` registry."""
    requests: dict[str, int] = {}
    escalations: dict[str, int] = {}
    tokens: dict[str, int] = {}
    generated = http = http_errors = 0
    buckets: dict[str, int] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == "agl_route_decisions_total":
                reason = labels.get("reason", "")
                requests[reason] = requests.get(reason, 0) + value
                if labels.get("tier") == "cloud":
                    escalations[reason] = escalations.get(reason, 0) + value
            elif sample.name == "agl_http_requests_total":
                http += value
                if labels.get("status", "").startswith("5"):
                    http_errors += value
            elif sample.name == "agl_http_request_duration_seconds_bucket":
                le = labels.get("le", "+Inf")
                buckets[le] = buckets.get(le, 0) + value
            elif sample.name == "agl_tokens_total":
                tier = labels.get("tier", "")
                tokens[tier] = tokens.get(tier, 0) + value
                if labels.get("kind") == "output":
                    generated += value
    return Totals(requests, escalations, tokens, generated, (http, http_errors), buckets)


def config_revision(settings_json: str) -> str:
    """A short digest of the effective settings: it changes whenever the config does."""
    return hashlib.sha256(settings_json.encode()).hexdigest()[:16]


def build_heartbeat(
    *,
    seq: int,
    interval_s: float,
    uptime_s: float,
    models: Iterable[Artifact],
    plugins: Iterable[Artifact],
    revision: str | None,
    queue_depths: Mapping[str, int],
    breaker: str,
    now: Totals,
    before: Totals | None,
    elapsed_s: float,
) -> Heartbeat:
    """One heartbeat; tokens/s and the escalation share cover the time since ``before``."""
    base = before or Totals()
    routed = now.requests - base.requests
    escalated = sum(now.escalations_by_reason.values()) - sum(base.escalations_by_reason.values())
    tok_s = (now.generated - base.generated) / elapsed_s if elapsed_s > 0 else 0.0
    return Heartbeat(
        seq=seq,
        agent_version=__version__,
        interval_s=interval_s,
        uptime_s=max(uptime_s, 0.0),
        models=list(models)[:64],
        plugins=list(plugins)[:64],
        config_revision=revision,
        queue_depth=sum(queue_depths.values()),
        tok_s=max(tok_s, 0.0),
        escalation_share=min(max(escalated / routed, 0.0), 1.0) if routed > 0 else 0.0,
        breaker=breaker if breaker in ("closed", "open", "half_open") else "open",
        requests_by_reason=dict(list(now.requests_by_reason.items())[:32]),
        escalations_by_reason=dict(list(now.escalations_by_reason.items())[:32]),
        tokens_by_tier=dict(list(now.tokens_by_tier.items())[:8]),
    )


class Heartbeats:
    """Publishes the agent's heartbeat every ``interval_s`` seconds while the link is up."""

    def __init__(self, state: AgentState, uplink: Uplink, *, interval_s: float) -> None:
        self._state = state
        self._uplink = uplink
        self.interval_s = interval_s
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._revision = config_revision(state.settings.model_dump_json())
        self._before: Totals | None = None
        self.desired: Any = None
        """The desired-state watcher (``edge_agent.control.watcher``), when the agent runs one."""
        self._before_at = time.monotonic()

    def _artifacts(self) -> tuple[list[Artifact], list[Artifact]]:
        models = [
            Artifact(name=m.id, sha256=m.spec.sha256) for m in self._state.registry.models.values()
        ]
        watcher = self._state.plugins
        plugins = (
            [
                Artifact(name=p.manifest.name, sha256=p.manifest.sha256, version=p.manifest.version)
                for p in watcher.chain.plugins
            ]
            if watcher is not None
            else []
        )
        return models, plugins

    def build(self) -> Heartbeat:
        """The next heartbeat (advances the tokens/s and share window)."""
        now, at = read_totals(self._state.metrics.registry), time.monotonic()
        models, plugins = self._artifacts()
        beat = build_heartbeat(
            seq=self.sent,
            interval_s=self.interval_s,
            uptime_s=time.time() - self._state.started,
            models=models,
            plugins=plugins,
            revision=self._revision,
            queue_depths=self._state.queue_depths(),
            breaker=self._uplink.circuit_state,
            now=now,
            before=self._before,
            elapsed_s=at - self._before_at,
        )
        self._before, self._before_at = now, at
        return beat.model_copy(update=self._rollout_figures(now))

    def _rollout_figures(self, now: Totals) -> dict[str, Any]:
        """Counters a staged rollout compares, and the desired state and tuning in effect."""
        tuner = self._state.cascade_tuner
        cascade = self._state.settings.router.cascade
        figures: dict[str, Any] = {
            "http_requests": now.http[0],
            "http_errors": now.http[1],
            "latency_buckets": dict(list(now.latency_buckets.items())[:32]),
            "cascade_threshold": tuner.threshold if tuner is not None else cascade.min_mean_logprob,
            "tuned_share": tuner.measured_share if tuner is not None else None,
        }
        applier = getattr(self.desired, "applier", None)
        if applier is not None:
            figures["applied_revision"] = applier.applied_revision
            figures["apply_error"] = applier.apply_error
        return figures

    async def beat(self) -> bool:
        """Publish one heartbeat now; False when the link is down (nothing is queued)."""
        if not self._uplink.connected:
            return False
        sent = await self._uplink.publish_heartbeat(encode_heartbeat(self.build()))
        if sent:
            self.sent += 1
        return sent

    async def _loop(self) -> None:
        while True:
            # The first beat goes out as soon as the link is up, not one interval later.
            await self._uplink.wait_connected(self.interval_s)
            try:
                await self.beat()
            except Exception:  # a heartbeat must never take the agent down
                log.exception("heartbeat failed; trying again in %g s", self.interval_s)
            await asyncio.sleep(jittered(self.interval_s))

    def start(self) -> None:
        """Start beating in a task (the first beat goes out once the link is up)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="heartbeats")

    async def stop(self) -> None:
        """Stop beating."""
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
