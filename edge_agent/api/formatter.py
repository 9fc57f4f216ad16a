"""The one formatter: executor events → OpenAI JSON or SSE, for chat and text completions.

    fmt = CompletionFormat(model="smollm2", chat=True, include_usage=False, logprobs=False)
    body = await json_answer(events, fmt)          # a chat.completion object
    StreamingResponse(sse_answer(events, fmt))     # chat.completion.chunk events, then [DONE]

Every tier (local, cloud, cascade) yields the same events (``edge_agent.execute.events``), so
there is one rendering for all of them; the shapes themselves are in ``openai_shapes``. An answer
that ends cut short (``cancelled``) or fails is an error, never a complete-looking answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from edge_agent.api.openai_shapes import CompletionFormat, error_event
from edge_agent.errors import ApiError
from edge_agent.execute.events import Event, Failure, Pieces
from shared.runtimes.types import GenerationEnd, TokenPiece
from shared.tool_calls import MalformedCall, ParsedCall, new_call_id, parse_calls
from shared.tool_stream import CallScanner, CallStart

__all__ = [
    "CompletionFormat",
    "collect",
    "cut_short",
    "error_event",
    "json_answer",
    "no_final_event",
    "sse_answer",
]

_CUT_SHORT = "the answer was cut short before it was complete (cancelled); retry the request"
_NO_END = "the answer ended without a final event; retry, and see the agent's log if it repeats"


def cut_short() -> ApiError:
    """The error for an answer that ended ``cancelled`` (it must never look complete)."""
    return ApiError(502, _CUT_SHORT, type="server_error", code="incomplete")


def no_final_event() -> ApiError:
    """The error for an event stream that stopped without an end or a failure."""
    return ApiError(500, _NO_END, type="server_error", code="generation_failed")


def tool_calls_in(text: str, fmt: CompletionFormat, end: GenerationEnd) -> list[ParsedCall] | None:
    """The calls an answer makes (None: prose); an answer that is not a valid call is a 502."""
    if fmt.tools is None:
        return None
    try:
        return parse_calls(text, fmt.tools)
    except MalformedCall as exc:
        why = str(exc)
        if end.finish_reason == "length":
            why = f"the tool call was cut short by max_tokens ({why}); raise max_tokens"
        raise ApiError(502, why, type="server_error", code="malformed_tool_call") from None


async def sse_answer(events: AsyncIterator[Event], fmt: CompletionFormat) -> AsyncIterator[bytes]:
    """SSE bytes of one answer; a failure mid-answer ends it with an error event (no [DONE]).

    With callable tools, text is held back until its first character shows prose or a call
    (``{``); a call streams as tool-call chunks as it is generated, and is checked at the end
    (an invalid one ends the stream with an error event, not ``finish_reason: tool_calls``).
    """
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        opening = fmt.opening()
        if opening:
            yield opening
        if fmt.echo:
            yield fmt.pieces([TokenPiece(text=fmt.echo, token_id=-1)])
        held: list[TokenPiece] | None = [] if fmt.tools is not None else None
        calling: _CallStream | None = None
        async for event in events:
            if isinstance(event, Pieces):
                if calling is not None:
                    if chunk := calling.feed("".join(p.text for p in event.pieces)):
                        yield chunk
                    continue
                if held is not None:
                    held.extend(event.pieces)
                    text = "".join(p.text for p in held)
                    start = text.lstrip()[:1]
                    if not start:
                        continue
                    if start == "{" or (fmt.tools is not None and fmt.tools.forced):
                        calling, held = _CallStream(fmt), None  # a call: stream it as it comes
                        if chunk := calling.feed(text):
                            yield chunk
                        continue
                    event, held = Pieces(held), None  # prose: send it as it comes
                if chunk := fmt.pieces(event.pieces):
                    yield chunk
            elif isinstance(event, GenerationEnd):
                if event.finish_reason == "cancelled":
                    yield error_event(_CUT_SHORT, code="incomplete")
                    return
                try:
                    if calling is not None:
                        yield calling.finish(event)
                        return
                    text = "".join(p.text for p in held or [])
                    calls = tool_calls_in(text, fmt, event) if held is not None else None
                except ApiError as exc:
                    yield error_event(exc.message, code=exc.code or "malformed_tool_call")
                    return
                if calls:
                    yield fmt.tool_call_chunks(calls) + fmt.closing(event, tool_calls=True)
                    return
                if held and (chunk := fmt.pieces(held)):
                    yield chunk
                yield fmt.closing(event)
                return
            elif isinstance(event, Failure):
                yield error_event(event.message, code=event.code, type=event.type)
                return
        yield error_event(_NO_END, code="generation_failed")


class _CallStream:
    """A tool call streamed as it is generated (``shared.tool_stream``), checked at the end."""

    def __init__(self, fmt: CompletionFormat) -> None:
        self.fmt = fmt
        self.scan = CallScanner()
        self.text = ""
        self.sent: dict[int, str] = {}  # arguments text sent, by call index
        self.callable = {f["name"] for f in fmt.tools.calling} if fmt.tools else set()
        self.bad = False  # an undeclared function: nothing more goes out

    def feed(self, text: str) -> bytes:
        self.text += text
        out = b""
        for event in self.scan.feed(text):
            self.bad = self.bad or (
                isinstance(event, CallStart) and event.name not in self.callable
            )
            if self.bad:
                break
            if isinstance(event, CallStart):
                self.sent[event.index] = ""
                out += self.fmt.tool_call_delta(
                    event.index, "", call_id=new_call_id(), name=event.name
                )
            else:
                self.sent[event.index] += event.text
                out += self.fmt.tool_call_delta(event.index, event.text)
        return out

    def finish(self, end: GenerationEnd) -> bytes:
        """The rest and the closing chunks; :class:`ApiError` when the whole is not a valid call."""
        calls = tool_calls_in(self.text, self.fmt, end) or []
        if not self.scan.started:  # nothing went out yet (e.g. arguments as a JSON string)
            return self.fmt.tool_call_chunks(calls) + self.fmt.closing(end, tool_calls=True)
        if self.scan.started != [c.name for c in calls]:
            raise ApiError(
                502,
                "the streamed tool calls do not match the answer's calls",
                type="server_error",
                code="malformed_tool_call",
            )
        out = b"".join(
            self.fmt.tool_call_delta(i, json.dumps(c.arguments, separators=(",", ":")))
            for i, c in enumerate(calls)
            if not self.sent.get(i)
        )
        return out + self.fmt.closing(end, tool_calls=True)


async def collect(
    events: AsyncIterator[Event], *, on_pieces: Callable[[Pieces], None] | None = None
) -> tuple[list[TokenPiece], GenerationEnd]:
    """The pieces and end of a whole answer; a failure raises the :class:`ApiError` it names.

    ``on_pieces`` sees each batch of text as it arrives (a caller that streams while collecting).
    """
    pieces: list[TokenPiece] = []
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, Pieces):
                pieces.extend(event.pieces)
                if on_pieces is not None:
                    on_pieces(event)
            elif isinstance(event, GenerationEnd):
                if event.finish_reason == "cancelled":
                    raise cut_short()
                return pieces, event
            elif isinstance(event, Failure):
                raise ApiError(event.status, event.message, type=event.type, code=event.code)
    raise no_final_event()


async def json_answer(events: AsyncIterator[Event], fmt: CompletionFormat) -> dict[str, Any]:
    """The non-streamed OpenAI response body of one answer."""
    pieces, end = await collect(events)
    calls = tool_calls_in("".join(p.text for p in pieces), fmt, end)
    return fmt.full(pieces, end, calls=calls)
