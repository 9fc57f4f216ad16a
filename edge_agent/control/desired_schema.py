"""The desired-state schema, checked with the agent's own settings models (pure).

A layer or a merged state holds ``router`` (:class:`RouterConfig`, as ``[router]`` in
``edge.toml``), ``telemetry`` (:class:`TelemetryConfig`), ``plugins`` (name → sha256 and config)
and ``models`` (id → sha256 and runtime settings). A bad value gets the same field-level message
as ``edge-agent config show``.

    state = validate_desired(tomllib.loads(text))     # DesiredStateError naming each bad field

The hub cannot import the agent, so ``hubctl policy set`` runs this module's check in a child
process: ``python -m edge_agent.control.desired_schema < layer.json`` prints ``ok`` or the
error lines and exits 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent.errors import EdgeError
from edge_agent.router.policy import RouterConfig
from shared.settings_files import format_validation_error
from shared.telemetry.config import TelemetryConfig

__all__ = ["DesiredModel", "DesiredPlugin", "DesiredState", "DesiredStateError", "validate_desired"]

_HEX = "0123456789abcdef"


def _digest(value: str) -> str:
    value = value.lower()
    if len(value) != 64 or any(c not in _HEX for c in value):
        raise ValueError("must be 64 hexadecimal characters (a sha256 digest)")
    return value


class DesiredStateError(EdgeError):
    """A desired-state layer or record does not fit the agent's schema."""


class DesiredPlugin(BaseModel):
    """One plugin of the chain: the stored artifact (by sha256) and its config."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(description="Digest of the .wasm in the agl_plugins object store.")
    config: dict[str, str] = Field(
        default_factory=dict, description="Plugin config (overrides the manifest's)."
    )
    priority: int | None = Field(None, description="Order in its phase (overrides the manifest).")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        return _digest(value)


class DesiredModel(BaseModel):
    """One model the agent serves: the stored artifact (by sha256) and its runtime settings."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(description="Digest of the file in the agl_models object store.")
    task: Literal["chat", "completion", "classify", "embed"] = Field(
        "chat", description="What the model serves."
    )
    main: bool = Field(False, description="Serve it as the main chat model (replaces it live).")
    n_ctx: int = Field(2048, ge=64, le=131072, description="Context window for a GGUF model.")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        return _digest(value)


class DesiredState(BaseModel):
    """A desired-state layer or merged state; every section is optional."""

    model_config = ConfigDict(extra="forbid")

    router: RouterConfig | None = Field(None, description="Routing policy ([router] of edge.toml).")
    plugins: dict[str, DesiredPlugin] | None = Field(
        None, description="The plugin chain by name; set means the whole chain."
    )
    models: dict[str, DesiredModel] | None = Field(None, description="Models by id.")
    telemetry: TelemetryConfig | None = Field(None, description="Sampling and exporters.")


def validate_desired(doc: Any) -> DesiredState:
    """Check ``doc`` against the agent's schema; :class:`DesiredStateError` lists bad fields."""
    try:
        return DesiredState.model_validate(doc)
    except ValidationError as exc:
        text = format_validation_error(exc, env_prefix="AGL_", cls=DesiredState)
        raise DesiredStateError(
            text.replace("invalid settings:", "invalid desired state:", 1)
        ) from None


def main() -> int:
    """Check a JSON document read from stdin: print ``ok`` (exit 0) or the errors (exit 1)."""
    try:
        doc = json.loads(sys.stdin.read())
        validate_desired(doc)
    except json.JSONDecodeError as exc:
        print(f"invalid desired state: not JSON: {exc}")
        return 1
    except DesiredStateError as exc:
        print(exc)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
