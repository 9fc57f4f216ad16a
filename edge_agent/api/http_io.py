"""Reading request bodies safely and writing OpenAI-shaped JSON answers.

A body must be a JSON object in UTF-8, at most ``max_body_bytes`` long, not nested
pathologically deep, with no lone UTF-16 surrogates in its strings. Bodies sent as
``text/plain``, form data or multipart are refused with 415: those are the content types a web
page may send to ``localhost`` without the browser asking first, so refusing them keeps
drive-by pages from using the agent. No ``Content-Type`` at all is accepted, as curl and
llama-server users expect; so is any JSON type.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from edge_agent.errors import ApiError

M = TypeVar("M", bound=BaseModel)

_TOO_DEEP = "the request body is nested too deeply; OpenAI requests need only a few levels"

_BROWSER_SIMPLE = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in _BROWSER_SIMPLE:
        raise ApiError(
            415,
            f"the body was sent as {ctype}; send it as JSON with Content-Type: application/json",
            code="unsupported_media_type",
        )


def _surrogate_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where the first string holding a lone surrogate is, as a path of keys and indexes."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        if isinstance(key, str) and _SURROGATE.search(key):
            return (*path, key)
        found = _surrogate_path(item, (*path, str(key)))
        if found is not None:
            return found
    return None


async def read_json(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or an :class:`ApiError` saying what is wrong with it."""
    _check_content_type(request)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "the Content-Length header is not a number") from None
        if size > max_bytes:
            raise _too_large(size, max_bytes)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(received, max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"the request body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise ApiError(400, _TOO_DEEP) from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            400, f"the request body must be a JSON object, not a JSON {type(body).__name__}"
        )
    if _SURROGATE_ESCAPE.search(text):
        try:
            where = _surrogate_path(body)
        except RecursionError:
            raise ApiError(400, _TOO_DEEP) from None
        if where is not None:
            raise ApiError(
                400,
                f"{'.'.join(where)} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
                "escape); send valid Unicode",
                param=".".join(where),
            )
    return body


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body has at least {size} bytes; the limit is {limit} (setting max_body_bytes)",
        code="request_too_large",
    )


def parse_body(model: type[M], body: dict[str, Any]) -> M:
    """Validate ``body`` against a request schema; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ApiError(400, f"invalid request: {problems}", param=param) from None


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A compact JSON response."""
    return Response(
        json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_payload(exc: ApiError) -> dict[str, Any]:
    """OpenAI's error object."""
    return {
        "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    }


def error_response(exc: ApiError) -> Response:
    """An :class:`ApiError` as an HTTP answer."""
    return json_response(error_payload(exc), status=exc.status, headers=exc.headers)
