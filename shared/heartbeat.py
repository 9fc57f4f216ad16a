"""The heartbeat an edge agent publishes on ``agl.v1.dev.<device>.hb`` (pure: schema + codec).

    data = encode_heartbeat(Heartbeat(agent_version="0.1.0", interval_s=10, uptime_s=42))
    beat = decode_heartbeat(data)        # ProtocolError saying what is wrong

Counters (``requests_by_reason``, ``escalations_by_reason``, ``tokens_by_tier``) count since the
agent started; the hub sums the latest heartbeat of each device for ``hubctl stats``. Every list
and map is bounded so that one device cannot make the hub store megabytes. Unknown fields are
ignored (a newer agent may say more); the ``v`` field decides compatibility.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.subjects import ProtocolError

HEARTBEAT_VERSION = 1
#: Largest heartbeat the hub reads, in bytes.
MAX_HEARTBEAT_BYTES = 64 * 1024

_Name = Annotated[str, Field(min_length=1, max_length=128)]
_Count = Annotated[int, Field(ge=0)]


class Artifact(BaseModel):
    """A model or plugin the agent runs, with its digest (``None`` when not known)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: _Name
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    version: str | None = Field(default=None, max_length=64)


class Heartbeat(BaseModel):
    """One device's state, published every ``hub.heartbeat_s`` seconds."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    type: Literal["heartbeat"] = "heartbeat"
    seq: int = Field(default=0, ge=0, description="Counts this agent's heartbeats from 0.")
    agent_version: str = Field(min_length=1, max_length=64)
    interval_s: float = Field(gt=0, le=3600, description="Seconds until the next heartbeat.")
    uptime_s: float = Field(ge=0)
    models: list[Artifact] = Field(default_factory=list, max_length=64)
    plugins: list[Artifact] = Field(default_factory=list, max_length=64)
    config_revision: str | None = Field(default=None, max_length=128)
    queue_depth: int = Field(default=0, ge=0)
    tok_s: float = Field(default=0.0, ge=0, description="Recent generated tokens per second.")
    escalation_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of recent requests answered by the hub."
    )
    breaker: Literal["closed", "open", "half_open"] = "closed"
    requests_by_reason: dict[_Name, _Count] = Field(default_factory=dict, max_length=32)
    escalations_by_reason: dict[_Name, _Count] = Field(default_factory=dict, max_length=32)
    tokens_by_tier: dict[_Name, _Count] = Field(default_factory=dict, max_length=8)
    # Desired state and staged rollouts (cumulative counters; the hub diffs two heartbeats).
    http_requests: int = Field(default=0, ge=0, description="HTTP requests answered so far.")
    http_errors: int = Field(default=0, ge=0, description="Of them, answered with a 5xx.")
    latency_buckets: dict[Annotated[str, Field(max_length=16)], _Count] = Field(
        default_factory=dict,
        max_length=32,
        description="Cumulative HTTP latency histogram: upper bound in s ('+Inf') -> count.",
    )
    applied_revision: str | None = Field(default=None, max_length=64)
    apply_error: str | None = Field(default=None, max_length=1000)
    cascade_threshold: float | None = Field(
        default=None, description="The cascade's current (possibly tuned) min_mean_logprob."
    )
    tuned_share: float | None = Field(
        default=None, ge=0, le=1, description="Escalated share of the tuner's recent window."
    )


def encode_heartbeat(beat: Heartbeat) -> bytes:
    """Compact JSON bytes of ``beat``."""
    return beat.__pydantic_serializer__.to_json(beat)


def decode_heartbeat(data: bytes) -> Heartbeat:
    """Parse and validate a heartbeat; :class:`ProtocolError` says what is wrong."""
    if len(data) > MAX_HEARTBEAT_BYTES:
        raise ProtocolError(
            f"heartbeat is {len(data)} bytes; at most {MAX_HEARTBEAT_BYTES} are read"
        )
    try:
        return Heartbeat.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise ProtocolError(f"heartbeat does not match v{HEARTBEAT_VERSION}: {problems}") from None
