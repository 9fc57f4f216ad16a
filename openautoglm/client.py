"""Model calls to an agent's OpenAI API with the official ``openai`` client.

    async with AgentClient() as agent:          # OPENAUTOGLM_BASE_URL or http://127.0.0.1:8080/v1
        reply = await agent.call(ModelRequest(task="t", model="glm-4-plus", messages=[...]))
        reply.tier, reply.reason                 # from x-agl-tier / x-agl-reason

The current span's W3C ``traceparent`` goes with every request (``extra_headers``), so the
agent's spans join the pipeline's trace. ``openai`` errors are translated here: a connection
failure becomes :class:`AgentUnreachableError` (saying how to start an agent), an error answer
:class:`ModelCallError` with the agent's own message.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import openai
from opentelemetry import propagate

from shared.pipelines import AgentUnreachableError, ModelCallError, ModelReply, ModelRequest

__all__ = ["DEFAULT_BASE_URL", "AgentClient", "base_url_from_env"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
BASE_URL_ENV = "OPENAUTOGLM_BASE_URL"


def base_url_from_env() -> str:
    """``$OPENAUTOGLM_BASE_URL``, or the all-in-one's default address."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


class AgentClient:
    """One agent's OpenAI API, for the model tasks of a run (open it per event loop)."""

    def __init__(
        self, base_url: str | None = None, *, api_key: str | None = None, timeout_s: float = 300.0
    ) -> None:
        self.base_url = (base_url or base_url_from_env()).rstrip("/")
        self._api_key = api_key or os.environ.get("OPENAUTOGLM_API_KEY") or "unused"
        self._timeout_s = timeout_s
        self._client: openai.AsyncOpenAI | None = None
        self._auto_model: str | None = None

    async def __aenter__(self) -> AgentClient:
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=self._timeout_s, max_retries=0
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def call(self, req: ModelRequest) -> ModelReply:
        """One chat completion; streams through ``req.on_piece`` when it is set."""
        model = await self._local_model() if req.model == "auto" else req.model
        try:
            return await self._chat(req, model)
        except openai.APITimeoutError as exc:
            raise ModelCallError(
                f"no answer within {self._timeout_s} s", status=504, model=model
            ) from exc
        except openai.APIConnectionError as exc:
            raise AgentUnreachableError(self.base_url, str(exc.__cause__ or exc)) from exc
        except openai.APIStatusError as exc:
            raise ModelCallError(_agent_message(exc), status=exc.status_code, model=model) from exc
        except openai.APIError as exc:  # an error event in the middle of a stream
            raise ModelCallError(exc.message, status=502, model=model) from exc

    async def _chat(self, req: ModelRequest, model: str) -> ModelReply:
        client = self._open()
        headers: dict[str, str] = {}
        propagate.inject(headers)  # traceparent of the task's span
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": req.messages,
            "extra_headers": headers,
        }
        for name in ("max_tokens", "temperature", "top_p", "stop", "seed"):
            if (value := getattr(req, name)) is not None:
                kwargs[name] = value
        if req.on_piece is None:
            raw = await client.chat.completions.with_raw_response.create(**kwargs)
            done = raw.parse()
            usage = done.usage
            return ModelReply(
                text=done.choices[0].message.content or "",
                tier=raw.headers.get("x-agl-tier"),
                reason=raw.headers.get("x-agl-reason"),
                model=done.model,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
            )
        raw_stream = await client.chat.completions.with_raw_response.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        stream = raw_stream.parse()
        text: list[str] = []
        served, prompt_tokens, completion_tokens = model, None, None
        async for chunk in stream:
            served = chunk.model or served
            if chunk.choices and (piece := chunk.choices[0].delta.content):
                text.append(piece)
                req.on_piece(piece)
            if chunk.usage is not None:
                prompt_tokens = chunk.usage.prompt_tokens
                completion_tokens = chunk.usage.completion_tokens
        return ModelReply(
            text="".join(text),
            tier=raw_stream.headers.get("x-agl-tier"),
            reason=raw_stream.headers.get("x-agl-reason"),
            model=served,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    async def _local_model(self) -> str:
        """The agent's main chat model: sending it with no tier header lets the router choose."""
        if self._auto_model is None:
            try:
                page = await self._open().models.list()
            except openai.APIConnectionError as exc:
                raise AgentUnreachableError(self.base_url, str(exc.__cause__ or exc)) from exc
            cards = [m.model_dump() for m in page.data]
            local = [c["id"] for c in cards if c.get("tier") == "edge" and c.get("task") == "chat"]
            if not local:
                raise ModelCallError(
                    "the agent lists no local chat model to route from", status=404, model="auto"
                )
            self._auto_model = local[0]
        return self._auto_model

    def _open(self) -> openai.AsyncOpenAI:
        if self._client is None:
            raise RuntimeError("use AgentClient in `async with`")
        return self._client


def _agent_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return exc.message
