"""A batch input file, line by line: each line is a request or an error for the error file.

    parsed = parse_input(data, endpoint="/v1/chat/completions", max_lines=50_000)
    parsed.requests      # [(index, custom_id, body)], in file order
    parsed.errors        # [LineError(index, custom_id, code, message)]

A malformed line never fails the whole batch: it becomes a line of the error file. Only a file
that holds no line at all, too many lines or duplicate ``custom_id`` s is refused as a whole,
as OpenAI does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")


class InputFileError(ValueError):
    """The whole input file is unusable (the message says why and what to fix)."""


@dataclass(frozen=True)
class LineError:
    """One line that cannot be run."""

    index: int
    custom_id: str | None
    code: str
    message: str


@dataclass
class ParsedInput:
    """The usable requests and the per-line errors of one input file."""

    requests: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Lines counted in ``request_counts.total``."""
        return len(self.requests) + len(self.errors)


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if the agent runs it in batches, else :class:`InputFileError`."""
    if endpoint not in ENDPOINTS:
        raise InputFileError(
            f"endpoint {endpoint!r} is not supported in batches; use one of {', '.join(ENDPOINTS)}"
        )
    return endpoint


def _line(index: int, raw: bytes, endpoint: str) -> tuple[str, dict[str, Any]] | LineError:
    try:
        item = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return LineError(index, None, "invalid_json", f"line {index + 1} is not JSON: {exc}")
    if not isinstance(item, dict):
        return LineError(index, None, "invalid_request", f"line {index + 1} is not a JSON object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineError(
            index, None, "missing_custom_id", f"line {index + 1} has no custom_id string"
        )
    if item.get("method", "POST") != "POST":
        return LineError(
            index, custom_id, "invalid_method", f"line {index + 1}: method must be POST"
        )
    if item.get("url") != endpoint:
        return LineError(
            index,
            custom_id,
            "mismatched_url",
            f"line {index + 1}: url {item.get('url')!r} differs from the batch's endpoint {endpoint!r}",
        )
    body = item.get("body")
    if not isinstance(body, dict):
        return LineError(
            index, custom_id, "invalid_body", f"line {index + 1}: body must be a JSON object"
        )
    return custom_id, body


def parse_input(data: bytes, *, endpoint: str, max_lines: int) -> ParsedInput:
    """Split ``data`` (JSONL) into requests and per-line errors; see the module doc."""
    check_endpoint(endpoint)
    raw_lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if not raw_lines:
        raise InputFileError("the input file holds no request lines")
    if len(raw_lines) > max_lines:
        raise InputFileError(
            f"the input file has {len(raw_lines)} lines; a batch may hold at most {max_lines} "
            "(setting batches.max_lines_per_batch); split it into several batches"
        )
    parsed = ParsedInput()
    seen: set[str] = set()
    for index, raw in enumerate(raw_lines):
        line = _line(index, raw, endpoint)
        if isinstance(line, LineError):
            parsed.errors.append(line)
            continue
        custom_id, body = line
        if custom_id in seen:
            raise InputFileError(
                f"custom_id {custom_id!r} appears more than once; each line needs its own"
            )
        seen.add(custom_id)
        parsed.requests.append((index, custom_id, body))
    return parsed
