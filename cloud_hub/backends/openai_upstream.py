"""An OpenAI-compatible upstream (vLLM, GLM, OpenAI …) reached over HTTP with SSE streaming.

The API key is read from the environment variable the config names, never from the config
itself. The hub's model name maps to the upstream's (``glm-4-plus`` → ``upstream_model``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from cloud_hub.backends.base import BackendEvent, RequestContext
from cloud_hub.errors import BackendError
from shared.protocol import TRACEPARENT_HEADER, ChatTurn, InferRequest
from shared.runtimes.grammar import JSON_OBJECT
from shared.runtimes.types import FinishReason, GenerationEnd
from shared.tool_calls import call_text

log = logging.getLogger(__name__)


class OpenAIUpstreamBackend:
    """Forwards chat and completion requests to ``base_url`` and streams the answer back."""

    kinds = frozenset({"chat", "completion"})

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key_env: str | None,
        upstream_model: str | None = None,
        timeout_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.upstream_model = upstream_model or name
        self._base_url = base_url.rstrip("/")
        self._api_key_env = api_key_env
        self._timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Read the API key and open the HTTP client."""
        headers = {}
        if self._api_key_env:
            key = os.environ.get(self._api_key_env)
            if not key:
                raise BackendError(
                    f"model {self.name}: environment variable {self._api_key_env} is empty; "
                    "export the upstream API key there before starting the hub"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            headers=headers,
            timeout=httpx.Timeout(self._timeout_s, connect=10.0),
            transport=self._transport,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _body(self, req: InferRequest) -> tuple[str, dict[str, Any]]:
        p = req.params
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if p.stop:
            body["stop"] = p.stop
        if p.seed is not None:
            body["seed"] = p.seed
        if p.frequency_penalty:
            body["frequency_penalty"] = p.frequency_penalty
        if p.presence_penalty:
            body["presence_penalty"] = p.presence_penalty
        if p.grammar is not None:
            body["response_format"] = response_format(p.grammar)
        if req.kind == "chat":
            body["messages"] = [_message(m) for m in req.messages or []]
            if req.tools:  # passed through; the calls come back as the generic format's text
                body["tools"] = [{"type": "function", "function": f} for f in req.tools]
                choice = req.tool_choice or "auto"
                body["tool_choice"] = (
                    choice
                    if choice in ("auto", "none", "required")
                    else {"type": "function", "function": {"name": choice}}
                )
                if not req.parallel_tool_calls:
                    body["parallel_tool_calls"] = False
            return "/chat/completions", body
        body["prompt"] = req.prompt or ""
        return "/completions", body

    @staticmethod
    def _forward_headers(incoming: Mapping[str, str]) -> dict[str, str]:
        tp = incoming.get(TRACEPARENT_HEADER)
        return {TRACEPARENT_HEADER: tp} if tp else {}

    def _failed(self, message: str) -> BackendError:
        # The edge gets the error reply; the hub's operator needs the upstream's side of it.
        log.warning(
            "model %s: %s",
            self.name,
            message,
            extra={"model": self.name, "upstream": self._base_url},
        )
        return BackendError(message)

    async def run(
        self, req: InferRequest, ctx: RequestContext
    ) -> AsyncGenerator[BackendEvent, None]:
        """POST the request with ``stream: true`` and yield the deltas as they arrive."""
        if self._client is None:
            raise BackendError(f"model {self.name} is not started; start() the back-end first")
        path, body = self._body(req)
        reason: FinishReason = "stop"
        usage, pieces = None, 0
        calls: dict[int, dict[str, str]] = {}
        try:
            async with self._client.stream(
                "POST", path, json=body, headers=self._forward_headers(ctx.headers)
            ) as resp:
                if resp.status_code >= 400:
                    detail = (await resp.aread())[:300].decode("utf-8", "replace")
                    raise self._failed(f"upstream answered HTTP {resp.status_code}: {detail}")
                async for line in resp.aiter_lines():
                    if ctx.cancelled.is_set():
                        reason = "cancelled"
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        for delta in (choice.get("delta") or {}).get("tool_calls") or []:
                            call = calls.setdefault(
                                delta.get("index", 0), {"name": "", "arguments": ""}
                            )
                            fn = delta.get("function") or {}
                            call["name"] += fn.get("name") or ""
                            call["arguments"] += fn.get("arguments") or ""
                        text = (choice.get("delta") or {}).get("content") or choice.get("text")
                        if text:
                            pieces += 1
                            yield text
                        if choice.get("finish_reason"):
                            # content_filter, tool_calls …: the text ended normally.
                            reason = "length" if choice["finish_reason"] == "length" else "stop"
        except httpx.HTTPError as exc:
            message = str(exc) or type(exc).__name__
            raise self._failed(f"upstream {self._base_url} failed: {message}") from exc
        except json.JSONDecodeError as exc:
            raise self._failed(f"upstream sent a malformed SSE event: {exc}") from exc
        if calls and reason != "cancelled":  # the edge parses and checks them
            yield call_text(
                [{**c, "arguments": _loads(c["arguments"])} for _, c in sorted(calls.items())]
            )
        usage = usage or {}
        yield GenerationEnd(
            reason,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", pieces)),
        )


def response_format(grammar: str) -> dict[str, Any]:
    """OpenAI's ``response_format`` for a grammar source (``shared.runtimes.grammar``)."""
    if grammar == JSON_OBJECT:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": json.loads(grammar), "strict": True},
    }


def _message(turn: ChatTurn) -> dict[str, Any]:
    out = turn.model_dump(exclude_none=True)
    if turn.tool_calls and not turn.content:
        out["content"] = None
    return out


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # not JSON: the edge reports the call as malformed
