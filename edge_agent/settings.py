"""The edge agent's one settings schema.

Values come from, highest priority first: CLI flags, ``AGL_*`` environment variables,
the TOML file given with ``--config``, then the defaults below.

    settings = load_settings(Path("edge.toml"), port=9000)
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from edge_agent.batches.settings import BatchSettings
from edge_agent.control.desired_settings import DesiredSettings
from edge_agent.router.policy import RouterConfig
from shared.model_files import BUNDLED_MODEL_ID
from shared.nats_auth import CredentialsError, read_creds
from shared.settings_files import TomlFileSettings, load_from, unknown_env_vars
from shared.subjects import heartbeat_subject
from shared.telemetry.config import TelemetryConfig


def _default_device_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64].strip("-")
    return name or "edge"


class HardExampleConfig(BaseModel):
    """Sedna-style joint inference for an ONNX classifier: hard rows go to the hub's model."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["max_prob", "cross_entropy"] = Field(
        "cross_entropy",
        description="max_prob: top probability; cross_entropy: 1 + Σ p·log p / log n.",
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="Rows whose confidence is below this escalate."
    )
    cloud_model: str = Field(
        min_length=1, description="The hub's ONNX model that answers hard rows."
    )


class ModelSpec(BaseModel):
    """One extra model the agent serves besides the main chat model."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Name clients pass as `model`.")
    path: Path = Field(description="Path of a .gguf or .onnx file.")
    task: Literal["chat", "completion", "classify", "embed"] = Field(
        "chat",
        description="What the model serves: chat/completion (GGUF), classify or embed (ONNX or GGUF).",
    )
    sha256: str | None = Field(None, description="Pinned digest; loading fails on a mismatch.")
    labels: list[str] | None = Field(
        None, description="Class names of an ONNX classifier, by index."
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime execution providers, in order of preference.",
    )
    n_ctx: int = Field(2048, ge=64, description="Context window for a GGUF model.")
    hard_example: HardExampleConfig | None = Field(
        None,
        description="ONNX classifiers: escalate low-confidence rows to the hub (joint inference).",
    )

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value)
        ):
            raise ValueError("must be 64 hexadecimal characters (a sha256 digest)")
        return value.lower() if value else value


class HubLink(BaseModel):
    """How the agent reaches the hub over NATS; without ``nats_url`` it never escalates."""

    model_config = ConfigDict(extra="forbid")

    nats_url: str | None = Field(
        None, description="NATS server(s) of the hub, e.g. nats://hub:4222; comma-separate several."
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="Whole-answer deadline of a non-streamed escalation."
    )
    first_chunk_timeout_s: float = Field(
        15.0, gt=0, description="Wait for the first streamed chunk."
    )
    chunk_timeout_s: float = Field(
        10.0, gt=0, description="Longest gap between two streamed chunks."
    )
    breaker_failures: int = Field(
        3, ge=1, description="Consecutive failures that open the circuit."
    )
    breaker_cooldown_s: float = Field(10.0, ge=0, description="Open-circuit time before one probe.")
    daily_token_budget: int | None = Field(
        None,
        ge=0,
        description="Cloud tokens this device may spend per UTC day (empty = unlimited).",
    )
    credentials: Path | None = Field(
        None,
        description="This device's NATS .creds file (`hubctl devices enroll`); empty = no "
        "credentials (an open dev-mode server; the agent logs one warning).",
    )
    tls_ca: Path | None = Field(None, description="CA bundle that verifies the NATS server (TLS).")
    tls_cert: Path | None = Field(None, description="Client certificate for mutual TLS.")
    tls_key: Path | None = Field(None, description="Private key of tls_cert.")
    heartbeat_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds between heartbeats to the hub (agl.v1.dev.<device>.hb); the hub "
        "shows a device as stale after 3 missed beats and offline after 10.",
    )
    jetstream_domain: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The hub's JetStream domain, for desired state and artifacts ($JS.<domain>.API);"
        " set it when nats_url is a leaf node with its own JetStream (--embedded-leaf sets it to "
        "batches.hub_domain). Empty: the JetStream of the server nats_url names.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> HubLink:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("hub.tls_cert and hub.tls_key go together; set both or neither")
        return self


class EdgeSettings(TomlFileSettings):
    """Settings of ``edge-agent run``; see ``edge-agent config show`` for the effective values."""

    model_config = SettingsConfigDict(
        env_prefix="AGL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    device_id: str = Field(
        default_factory=lambda: _default_device_id(),
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="This device's name on the fleet (letters, digits, - and _). Default: the hostname.",
        json_schema_extra={"cli_default": "the hostname"},
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="gRPC port (KServe v2 inference protocol, agl.v1.Chat, health, reflection) on `host`; 0 picks a free one; empty = off.",
        json_schema_extra={"cli_default": "off"},
    )
    grpc_max_message_bytes: int = Field(
        4_194_304,
        ge=1024,
        le=1_073_741_824,
        description="Largest gRPC message received or sent (RESOURCE_EXHAUSTED above).",
    )
    model_id: str = Field(
        BUNDLED_MODEL_ID, min_length=1, description="Name of the main chat model."
    )
    model_path: Path | None = Field(
        None,
        description="GGUF file of the main model; empty means the bundled SmolLM2-135M-Instruct.",
        json_schema_extra={"cli_default": "the bundled SmolLM2-135M-Instruct Q4_1"},
    )
    model_sha256: str | None = Field(
        None,
        description="Pinned sha256 of model_path (the bundled model's digest is always checked).",
    )
    n_ctx: int = Field(2048, ge=128, le=131072, description="Context window in tokens.")
    n_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for generation.",
        json_schema_extra={"cli_default": "all cores"},
    )
    n_gpu_layers: int = Field(0, ge=-1, description="Layers to offload to the GPU (-1 = all).")
    extra_models: list[ModelSpec] = Field(
        default_factory=list,
        description="More models: ONNX classifiers/embedders or other GGUF files.",
    )
    max_queue: int = Field(
        16, ge=0, le=10000, description="Requests that may wait for the model; more get 503."
    )
    parallel: int = Field(
        4,
        ge=1,
        le=64,
        description=(
            "Generations the chat model decodes together (continuous batching); each slot keeps "
            "its own n_ctx tokens of KV cache. 1 decodes one sequence at a time."
        ),
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Deadline for one request in seconds, queueing included."
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_messages: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="Most messages one chat request may hold (400 above); bounds the work per request.",
    )
    max_embedding_inputs: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Most texts or token lists one /v1/embeddings request may hold (400 above).",
    )
    max_header_bytes: int = Field(
        65_536,
        ge=4096,
        le=16_777_216,
        description="Largest request line plus headers accepted (431 above).",
    )
    stream_interval_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description=(
            "Streamed tokens go out at most this often (the first one at once), several per SSE chunk "
            "when they arrive faster; 0 sends one chunk per token. Fewer chunks leave more CPU to the model "
            "when the app runs on the same device."
        ),
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds in-flight requests may take to finish."
    )
    plugins_dir: Path | None = Field(
        None,
        description="Directory of Wasm plugins (*.plugin.toml + .wasm), hot-reloaded; a relative "
        "path is taken from the directory the agent starts in. Empty disables plugins.",
        json_schema_extra={"cli_default": "none (no plugins)"},
    )
    pipelines_dir: Path | None = Field(
        None,
        description="Directory of declared pipelines (*.toml) served at /v1/pipelines; reloaded "
        "when a file changes, and a file that fails to load is logged and skipped.",
        json_schema_extra={"cli_default": "none (no pipelines)"},
    )
    keep_running_on_load_error: bool = Field(
        False,
        description="When a model fails to load, keep serving (/healthz, /status; /readyz says 503) "
        "instead of exiting with the loader's message.",
    )
    hub: HubLink = Field(default_factory=HubLink, description="The NATS link to the hub.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys the HTTP API requires (`Authorization: Bearer KEY`), like "
        "llama-server --api-key; AGL_API_KEYS=k1,k2. Empty: no keys (loopback only). "
        "/healthz, /readyz and /metrics stay open.",
        json_schema_extra={"cli_default": "none"},
    )
    insecure_no_auth: bool = Field(
        False,
        description="Listen beyond loopback without api_keys: anyone who reaches the port "
        "may use the models.",
    )
    batches: BatchSettings = Field(
        default_factory=BatchSettings,
        description="OpenAI Batch API: the site leaf's JetStream domain, limits, retention, "
        "--embedded-leaf ([batches] table).",
    )
    router: RouterConfig = Field(
        default_factory=RouterConfig,
        description="Where requests are answered: rules, cascade, load SLO.",
    )
    desired: DesiredSettings = Field(
        default_factory=DesiredSettings,
        description="Fleet desired state: watch KV agl_config, verified artifacts, pinned local "
        "settings ([desired] table).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log verbosity."
    )
    telemetry: TelemetryConfig = Field(
        default_factory=TelemetryConfig,
        description="Traces, metrics and logs: OTLP endpoint, sampling, Loki ([telemetry] table, "
        "AGL_TELEMETRY__ENDPOINT=…).",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):  # AGL_API_KEYS=k1,k2
            value = [k.strip() for k in value.split(",") if k.strip()]
        if isinstance(value, list) and any(
            len(k.get_secret_value() if isinstance(k, SecretStr) else str(k)) < 8 for k in value
        ):
            raise ValueError("each API key needs at least 8 characters")
        return value

    @model_validator(mode="after")
    def _credentials_fit_device(self) -> EdgeSettings:
        creds = self.hub.credentials
        if creds is None:
            return self
        try:
            found = read_creds(creds)
        except CredentialsError as exc:
            raise ValueError(str(exc)) from None
        subject = heartbeat_subject(self.device_id)
        if not found.allows_publish(subject):
            raise ValueError(
                f"hub.credentials {creds} belong to {found.name!r}, whose permissions do not "
                f"cover device_id {self.device_id!r} ({subject}); set device_id to the enrolled "
                "id or enroll this device (`hubctl devices enroll DEVICE_ID`)"
            )
        return self


ENV_PREFIX = "AGL_"
#: Variables of the hub's schema (``AGL_HUB_NATS_URL``), not unknown ones of the agent's.
OTHER_ENV_PREFIXES = ("AGL_HUB_",)


def load_settings(config_file: Path | None = None, **overrides: Any) -> EdgeSettings:
    """Build the effective settings; raise :class:`ConfigError` with a readable message."""
    return load_from(EdgeSettings, config_file, overrides, env_prefix=ENV_PREFIX)


def unknown_env_warnings() -> list[str]:
    """One line per ``AGL_*`` environment variable that sets nothing (a typo, an old name)."""
    return unknown_env_vars(EdgeSettings, env_prefix=ENV_PREFIX, others=OTHER_ENV_PREFIXES)
