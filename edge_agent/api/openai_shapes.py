"""OpenAI's wire shapes for chat and text completions (pure: no I/O, no events).

:class:`CompletionFormat` renders one answer's chunks and whole response; the streaming hot
path renders each chunk from a pre-built prefix/suffix and one ``json.dumps`` of the token
text, so the per-token cost stays in the microseconds. ``edge_agent.api.formatter`` drives it
from the executors' events.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from shared.runtimes.types import GenerationEnd, TokenPiece
from shared.tool_calls import ParsedCall, ToolSpec, openai_tool_calls

__all__ = ["DONE", "CompletionFormat", "error_event", "finish_reason", "sse", "usage"]

DONE = b"data: [DONE]\n\n"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(obj: Any) -> bytes:
    """One SSE ``data:`` event."""
    return f"data: {_dumps(obj)}\n\n".encode()


def usage(end: GenerationEnd) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": end.prompt_tokens,
        "completion_tokens": end.completion_tokens,
        "total_tokens": end.prompt_tokens + end.completion_tokens,
    }


def finish_reason(end: GenerationEnd) -> str:
    """OpenAI finish reasons are ``stop`` or ``length``."""
    return "length" if end.finish_reason == "length" else "stop"


class CompletionFormat:
    """Chunks and full responses of one request (chat when ``chat`` is true, else text)."""

    def __init__(
        self,
        *,
        model: str,
        chat: bool,
        include_usage: bool,
        logprobs: bool,
        echo: str = "",
        response_id: str | None = None,
        tools: ToolSpec | None = None,
    ) -> None:
        self.chat = chat
        #: Chat with callable tools: the answer may be (or must be) tool calls.
        self.tools = tools if tools is not None and tools.calling and chat else None
        self.model = model
        #: Text completions with ``echo``: the prompt, sent before the answer.
        self.echo = echo
        self.id = response_id or ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.include_usage = include_usage
        self.logprobs = logprobs
        self._object = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": self.id, "object": self._object, "created": self.created, "model": self.model}
        self._head = _dumps(head)[:-1]  # without the closing brace
        tail = ',"usage":null' if include_usage else ""
        if chat:
            self._prefix = f'data: {self._head},"system_fingerprint":null,"choices":[{{"index":0,"delta":{{"content":'
        else:
            self._prefix = (
                f'data: {self._head},"system_fingerprint":null,"choices":[{{"index":0,"text":'
            )
        self._suffix = (
            '},"logprobs":null,"finish_reason":null}]' + tail + "}\n\n"
            if chat
            else ',"logprobs":null,"finish_reason":null}]' + tail + "}\n\n"
        )
        self._text_offset = 0

    def _chunk(self, choice: dict[str, Any], *, with_usage: dict[str, int] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [choice] if choice else [],
        }
        if self.include_usage:
            body["usage"] = with_usage
        return sse(body)

    def opening(self) -> bytes:
        """The first chat chunk announces the assistant role, as OpenAI's does."""
        if not self.chat:
            return b""
        return self._chunk(
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        )

    def pieces(self, pieces: Sequence[TokenPiece]) -> bytes:
        """One chunk carrying one or more generated tokens (empty when there is nothing to send)."""
        text = pieces[0].text if len(pieces) == 1 else "".join(p.text for p in pieces)
        if not self.logprobs:
            return (self._prefix + _dumps(text) + self._suffix).encode() if text else b""
        if self.chat:
            scored = [p for p in pieces if p.token_id >= 0]
            choice = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": {"content": self.chat_logprobs(scored)},
                "finish_reason": None,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": self.text_logprobs(pieces),
                "finish_reason": None,
            }
        return self._chunk(choice)

    def tool_call_delta(
        self, index: int, arguments: str, *, call_id: str | None = None, name: str = ""
    ) -> bytes:
        """One tool-call chunk: a call's start (``call_id``, type, name, ``arguments: ""``)
        or more of its arguments string, as OpenAI streams them."""
        delta: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if call_id is not None:
            delta = {"index": index, "id": call_id, "type": "function", **delta}
            delta["function"] = {"name": name, "arguments": arguments}
        choice = {"index": 0, "delta": {"tool_calls": [delta]}, "logprobs": None}
        return self._chunk({**choice, "finish_reason": None})

    def tool_call_chunks(self, calls: Sequence[ParsedCall]) -> bytes:
        """Whole calls as chunks: each call's start, then its arguments string in one delta."""
        out = b""
        for i, call in enumerate(openai_tool_calls(calls)):
            fn = call["function"]
            out += self.tool_call_delta(i, "", call_id=call["id"], name=fn["name"])
            out += self.tool_call_delta(i, fn["arguments"])
        return out

    def closing(self, end: GenerationEnd, *, tool_calls: bool = False) -> bytes:
        """The finish chunk, then the usage chunk when asked for, then ``[DONE]``."""
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {},
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else finish_reason(end),
            }
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": finish_reason(end)}
        out = self._chunk(choice)
        if self.include_usage:
            out += self._chunk({}, with_usage=usage(end))
        return out + DONE

    def full(
        self,
        pieces: Sequence[TokenPiece],
        end: GenerationEnd,
        *,
        calls: Sequence[ParsedCall] | None = None,
    ) -> dict[str, Any]:
        """The non-streamed response (a chat answer that is ``calls`` when they are given)."""
        prefix = self.echo
        text = prefix + "".join(p.text for p in pieces)
        choice: dict[str, Any]
        scored = [p for p in pieces if p.token_id >= 0]
        if self.chat:
            lp = {"content": self.chat_logprobs(scored)} if self.logprobs else None
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": openai_tool_calls(calls),
                }
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None if calls else lp,
                "finish_reason": "tool_calls" if calls else finish_reason(end),
            }
            obj = "chat.completion"
        else:
            self._text_offset = len(prefix)
            lp = self.text_logprobs(pieces) if self.logprobs else None
            choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish_reason(end)}
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [choice],
            "usage": usage(end),
        }

    @staticmethod
    def chat_logprobs(pieces: Sequence[TokenPiece]) -> list[dict[str, Any]]:
        """Chat-style logprobs entries."""
        return [
            {
                "token": p.own_text(),
                "logprob": p.logprob,
                "bytes": list(p.text.encode() if p.raw is None else p.raw),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}
                    for t in p.top_logprobs
                ],
            }
            for p in pieces
        ]

    def text_logprobs(self, pieces: Sequence[TokenPiece]) -> dict[str, Any]:
        """Legacy completions-style logprobs of the scored pieces; ``text_offset`` counts
        every character sent before a token (the echoed prompt, text released untokenised)."""
        offsets, scored = [], []
        for p in pieces:
            if p.token_id >= 0:
                offsets.append(self._text_offset)
                scored.append(p)
            self._text_offset += len(p.text)
        return {
            "tokens": [p.own_text() for p in scored],
            "token_logprobs": [p.logprob for p in scored],
            "top_logprobs": [{t.token: t.logprob for t in p.top_logprobs} for p in scored],
            "text_offset": offsets,
        }


def error_event(message: str, *, code: str, type: str = "server_error") -> bytes:
    """An error in the middle of a stream, as OpenAI sends it."""
    return sse({"error": {"message": message, "type": type, "param": None, "code": code}})
