"""File and batch records (kept in the site's JetStream KV) and their OpenAI shapes.

    rec = BatchRecord.new(batch_id, endpoint=..., input_file_id=..., now=time.time())
    batch_object(rec)          # what GET /v1/batches/{id} answers
    output_line(custom_id=..., index=..., body=..., tier="cloud", reason="default")

Status moves ``validating`` → ``in_progress`` → ``finalizing`` → ``completed`` (or ``failed``,
``cancelling`` → ``cancelled``, ``expired``), as OpenAI's batches do.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
#: A batch in one of these states has no more work, and its output files exist.
DONE: frozenset[str] = frozenset({"completed", "failed", "cancelled", "expired"})


def new_id(prefix: str) -> str:
    """``file-…`` / ``batch_…`` ids: 24 hex digits, valid as NATS tokens and KV keys."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


class FileRecord(BaseModel):
    """An uploaded or produced file."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int | None = None


class BatchError(BaseModel):
    """A batch-level error (OpenAI's ``errors.data`` item)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchRecord(BaseModel):
    """A batch's state; the per-line results live apart until it is finalized."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str = "24h"
    status: Status = "validating"
    tier: Literal["cloud", "edge", "auto"] = "cloud"
    tier_set: bool = False
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[BatchError] = Field(default_factory=list)


def batch_object(rec: BatchRecord) -> dict[str, Any]:
    """OpenAI's batch object."""
    errors = (
        {"object": "list", "data": [e.model_dump() for e in rec.errors]} if rec.errors else None
    )
    return {
        "id": rec.id,
        "object": "batch",
        "endpoint": rec.endpoint,
        "errors": errors,
        "input_file_id": rec.input_file_id,
        "completion_window": rec.completion_window,
        "status": rec.status,
        "output_file_id": rec.output_file_id,
        "error_file_id": rec.error_file_id,
        "created_at": rec.created_at,
        "in_progress_at": rec.in_progress_at,
        "expires_at": rec.expires_at,
        "finalizing_at": rec.finalizing_at,
        "completed_at": rec.completed_at,
        "failed_at": rec.failed_at,
        "expired_at": None,
        "cancelling_at": rec.cancelling_at,
        "cancelled_at": rec.cancelled_at,
        "request_counts": {"total": rec.total, "completed": rec.completed, "failed": rec.failed},
        "metadata": rec.metadata,
    }


def file_object(rec: FileRecord) -> dict[str, Any]:
    """OpenAI's file object."""
    return {
        "id": rec.id,
        "object": "file",
        "bytes": rec.bytes,
        "created_at": rec.created_at,
        "expires_at": rec.expires_at,
        "filename": rec.filename,
        "purpose": rec.purpose,
        "status": "processed",
        "status_details": None,
    }


def output_line(
    *,
    batch_id: str,
    index: int,
    custom_id: str,
    body: dict[str, Any] | None,
    status_code: int = 200,
    error: dict[str, Any] | None = None,
    tier: str | None = None,
    reason: str | None = None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """One line of the output (``body``) or error file (``error``), with the tier and reason.

    ``agl`` holds where the line ran (``tier``), why (``reason``) and, for a line the device ran
    itself, when it began (``started_at``, Unix seconds).
    """
    line: dict[str, Any] = {
        "id": f"batch_req_{batch_id}_{index}",
        "custom_id": custom_id,
        "response": None
        if body is None
        else {"status_code": status_code, "request_id": f"{batch_id}-{index}", "body": body},
        "error": error,
    }
    if tier is not None:
        line["agl"] = {"tier": tier, "reason": reason}
        if started_at is not None:
            line["agl"]["started_at"] = started_at
    return line
