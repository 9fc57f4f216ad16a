"""``[desired]`` in ``edge.toml``: how the agent follows the fleet's desired state.

[desired]
enabled = true
trusted_signers = ["A…"]        # hubctl plugins push prints the signing key
pinned = ["router.load_slo_s"]  # these local settings win over the fleet's
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DesiredSettings(BaseModel):
    """The desired-state watcher: KV ``agl_config``, the artifact cache, pinned settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Watch this device's key in KV agl_config (needs hub.nats_url)."
    )
    pinned: list[str] = Field(
        default_factory=list,
        description="Dotted settings (router.load_slo_s, router.rules, telemetry) whose local "
        "value wins over the fleet's desired state.",
    )
    trusted_signers: list[str] = Field(
        default_factory=list,
        description="Public nkeys (A…) whose signatures on plugins and models are accepted; "
        "empty refuses every artifact.",
    )
    cache_dir: Path = Field(
        Path(".agl-artifacts"), description="Where verified plugins and models are kept."
    )
    cache_max_bytes: int = Field(
        4 << 30, ge=1 << 20, description="Cache size above which unused entries are dropped."
    )
    reconcile_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds between reads of the key besides the watch (a safety net for a lost "
        "watch; the watch itself delivers a change at once).",
    )

    @field_validator("trusted_signers")
    @classmethod
    def _account_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if len(key) != 56 or not key.startswith("A"):
                raise ValueError(
                    f"{key[:12]!r} is not a public account nkey (56 characters, starting with A); "
                    "copy the full key from `hubctl plugins list --json` (signer) or from the "
                    "line `hubctl plugins push` prints (signed by …)"
                )
        return value
