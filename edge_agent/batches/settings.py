"""The ``[batches]`` settings table of the agent (OpenAI Batch API, offline store-and-forward)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class BatchSettings(BaseModel):
    """Where batch files and lines are kept, and the bounds on them."""

    model_config = ConfigDict(extra="forbid")

    leaf_domain: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream domain of the site's NATS leaf node that hub.nats_url points at; "
        "batches are kept there. Empty: the Batch API answers 503 (--embedded-leaf sets it).",
    )
    hub_domain: str = Field(
        "hub", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The hub side's JetStream domain."
    )
    max_file_bytes: int = Field(
        100_000_000, ge=1024, description="Largest file upload (413 above)."
    )
    max_lines_per_batch: int = Field(
        50_000, ge=1, le=1_000_000, description="Most request lines one batch may hold."
    )
    max_queued_lines: int = Field(
        100_000, ge=1, description="Lines this device may have waiting (429 above)."
    )
    max_queued_bytes: int = Field(
        512_000_000, ge=1024, description="Bytes of lines this device may have waiting (429 above)."
    )
    retention_s: float = Field(
        7 * 86400.0, gt=0, description="How long completed batches and their output files are kept."
    )
    leaf_remote: str | None = Field(
        None,
        description="--embedded-leaf: the hub side's leafnode URL, e.g. nats-leaf://hub:7422.",
    )
    leaf_credentials: Path | None = Field(
        None, description="--embedded-leaf: the site's .creds file for the leafnode remote."
    )
    leaf_store_dir: Path = Field(
        Path("agl-leaf"),
        description="--embedded-leaf: the leaf's JetStream directory (must survive restarts); "
        "relative to the directory the agent starts in.",
    )
    leaf_port: int = Field(
        0, ge=0, le=65535, description="--embedded-leaf: client port on 127.0.0.1 (0: a free one)."
    )
    leaf_max_file_store: str = Field(
        "1GB", pattern=r"^[0-9]+[KMGT]?B?$", description="--embedded-leaf: disk the leaf may use."
    )
