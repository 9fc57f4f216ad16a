"""The hub's one settings schema.

Values come from, highest priority first: CLI flags, ``AGL_HUB_*`` environment variables,
the TOML file given with ``--config``, then the defaults below.

    # hub.toml
    nats_url = "nats://127.0.0.1:4222"
    [[models]]
    name = "glm-4-plus"
    backend = "openai"
    base_url = "https://open.bigmodel.cn/api/paas/v4"
    api_key_env = "ZHIPU_API_KEY"
    upstream_model = "glm-4-plus"

    settings = load_hub_settings(Path("hub.toml"), nats_url="nats://10.0.0.5:4222")
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings_files import TomlFileSettings, load_from, unknown_env_vars
from shared.subjects import InvalidSubjectToken, hub_infer_wildcard
from shared.telemetry.config import TelemetryConfig

ENV_PREFIX = "AGL_HUB_"


class HubModelSpec(BaseModel):
    """One model the hub serves on ``agl.v1.dev.*.infer.<name>``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Model name edges send (the subject token).")
    backend: Literal["gguf", "onnx", "openai", "echo"] = Field(
        description="gguf (llama.cpp), onnx (classifier), openai (upstream API), "
        "echo (benchmark/test stand-in that repeats the prompt; never use in production)."
    )
    path: Path | None = Field(
        None, description="Model file for gguf/onnx; empty for gguf means the bundled SmolLM2."
    )
    n_ctx: int = Field(4096, ge=64, description="Context window of a GGUF model.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for GGUF (default: all).")
    n_gpu_layers: int = Field(
        -1, ge=-1, description="GGUF layers on the GPU; -1 = all (fine on CPU)."
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="onnxruntime providers in order of preference; missing ones fall back to CPU.",
    )
    labels: list[str] | None = Field(None, description="Class names of an ONNX classifier.")
    base_url: str | None = Field(None, description="OpenAI-compatible upstream base URL (…/v1).")
    api_key_env: str | None = Field(
        None, description="Name of the env var holding the upstream API key (never the key itself)."
    )
    upstream_model: str | None = Field(
        None, description="Model name the upstream knows; default: the same as `name`."
    )
    echo_delay_s: float = Field(0.0, ge=0, description="echo only: pause between words (tests).")
    capabilities: list[Literal["tools", "json_schema", "logprobs", "embeddings"]] | None = Field(
        None,
        description="What edges may route here (advertised on agl.v1.dev.<device>.models); "
        "empty = what the backend can do (gguf: tools, json_schema, logprobs; openai: tools, "
        "json_schema).",
    )

    @field_validator("name")
    @classmethod
    def _subject_token(cls, value: str) -> str:
        try:
            hub_infer_wildcard(value)
        except InvalidSubjectToken as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _backend_needs(self) -> HubModelSpec:
        if self.backend == "onnx" and self.path is None:
            raise ValueError(f"model {self.name!r}: backend onnx needs `path` (a .onnx file)")
        if self.backend == "openai" and not self.base_url:
            raise ValueError(f"model {self.name!r}: backend openai needs `base_url`")
        return self


class HubSettings(TomlFileSettings):
    """Settings of ``hubctl serve``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server(s), comma-separated.")
    models: list[HubModelSpec] = Field(
        default_factory=list, description="Models to serve ([[models]] tables in the TOML file)."
    )
    concurrency: int = Field(
        4,
        ge=1,
        le=10_000,
        description="Requests one worker runs at once; more get a `busy` reply. A GGUF model decodes "
        "that many together (its batch slots, at most 256, each with n_ctx tokens of KV cache).",
    )
    stream_interval_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description=(
            "Streamed tokens of one request go out at most this often (the first at once), several "
            "per chunk message when they come faster; 0 sends one chunk per token."
        ),
    )
    max_request_bytes: int | None = Field(
        None, ge=256, description="Largest request accepted; empty = the server's max_payload."
    )
    answer_unknown_models: bool = Field(
        True,
        description="Also listen on agl.v1.dev.*.infer.* to answer unknown models with an error. "
        "Turn off when hubs in one NATS account serve different model sets.",
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds in-flight requests may take to finish."
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Hub-side deadline for one request, in seconds."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log verbosity."
    )
    interest_check_s: float = Field(
        2.0,
        ge=0,
        description=(
            "Seconds between checks that someone still waits for a running request's answer "
            "(0 turns the checks off); a request nobody waits for is stopped."
        ),
    )
    credentials: Path | None = Field(
        None,
        description="The hub's NATS user credentials (.creds from `hubctl auth init`); empty = "
        "connect without credentials (an open dev-mode server).",
        json_schema_extra={"cli_default": "none"},
    )
    tls_ca: Path | None = Field(None, description="CA bundle that verifies the NATS server (TLS).")
    tls_cert: Path | None = Field(None, description="Client certificate for mutual TLS.")
    tls_key: Path | None = Field(None, description="Private key of tls_cert.")
    registry: bool = Field(
        True,
        description="Keep the device registry (JetStream KV agl_devices) from heartbeats on "
        "agl.v1.dev.*.hb; without JetStream the hub counts heartbeats but stores nothing.",
    )
    jetstream_domain: str = Field(
        "hub",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream domain of the hub's NATS server (its `jetstream { domain }`); "
        "batch results are kept there and edge sites read them through $JS.<domain>.API, so "
        "agents set the same name as batches.hub_domain.",
    )
    heartbeat_burst: int = Field(
        3, ge=1, le=1000, description="Heartbeats a device may send back to back."
    )
    heartbeat_min_interval_s: float = Field(
        1.0,
        ge=0,
        description="Steady heartbeat rate limit per device: one per this many seconds; "
        "more are dropped and counted.",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics endpoint (`hubctl serve` only); 0 = none.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the /metrics endpoint listens on; 0.0.0.0 lets other hosts scrape it.",
    )
    telemetry: TelemetryConfig = Field(
        default_factory=TelemetryConfig,
        description="Traces, metrics and logs: OTLP endpoint, sampling, Loki ([telemetry] table, "
        "AGL_HUB_TELEMETRY__ENDPOINT=…).",
    )

    @property
    def shown_nats_url(self) -> str:
        """``nats_url`` without user names, passwords or tokens, for logs and messages."""
        return ",".join(re.sub(r"//[^/@]*@", "//", u) for u in self.servers)

    @property
    def servers(self) -> list[str]:
        """``nats_url`` split into a list."""
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]

    @model_validator(mode="after")
    def _tls_pair(self) -> HubSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together; set both or neither")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> HubSettings:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self


def load_hub_settings(config_file: Path | None = None, **overrides: Any) -> HubSettings:
    """Build the effective settings; raise :class:`ConfigError` with a readable message."""
    return load_from(HubSettings, config_file, overrides, env_prefix=ENV_PREFIX)


def unknown_env_warnings() -> list[str]:
    """One line per ``AGL_HUB_*`` environment variable that sets nothing.

    ``AGL_HUB__*`` (two underscores) belongs to the edge agent's ``[hub]`` table.
    """
    return unknown_env_vars(HubSettings, env_prefix=ENV_PREFIX, others=("AGL_HUB__",))
