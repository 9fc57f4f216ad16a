"""The cloud executor: one escalation to the hub over NATS, as events.

    events = await cloud_events(uplink, request, hub=settings.hub, call=call)

``cloud_events`` returns only once the hub's first message has arrived, and raises
``CloudUnavailable``/``CloudFailed`` when nothing did: nothing has reached the client yet, so the
caller can still answer locally (``fallback``). A failure after that ends the stream with a
:class:`~edge_agent.execute.events.Failure`. ``call`` (the escalation's CLIENT span, whose
context travels in the NATS headers) ends with the stream.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from edge_agent.execute.events import Event, Failure, Pieces, Start
from edge_agent.execute.local import finish_call
from edge_agent.settings import HubLink
from edge_agent.uplink.client import Uplink
from edge_agent.uplink.errors import UplinkError
from shared.protocol import (
    ChatTurn,
    ChunkMessage,
    EndMessage,
    InferRequest,
    ResultMessage,
    token_pieces,
    wire_params,
)
from shared.runtimes.types import FinishReason, GenerationEnd, SamplingParams
from shared.telemetry import GenAiCall
from shared.tool_calls import ToolSpec

log = logging.getLogger("edge_agent.execute")

__all__ = ["cloud_events", "infer_request"]

_ROLES = {"developer": "system"}


def infer_request(
    *,
    device: str,
    model: str,
    kind: Literal["chat", "completion"],
    messages: list[dict[str, Any]] | None,
    prompt: str | None,
    params: SamplingParams,
    stream: bool,
    tools: ToolSpec | None = None,
) -> InferRequest:
    """The wire request that asks hub model ``model`` for this answer."""
    turns = (
        [
            ChatTurn(
                role=_ROLES.get(m["role"], m["role"]),
                content=m["content"],
                tool_calls=m.get("tool_calls"),
                tool_call_id=m.get("tool_call_id"),
            )
            for m in messages
        ]
        if messages is not None
        else None
    )
    return InferRequest(
        id=uuid.uuid4().hex,
        device=device,
        model=model,
        kind=kind,
        messages=turns,
        prompt=prompt,
        params=wire_params(params),
        stream=stream,
        tools=None if tools is None else [dict(f) for f in tools.functions],
        tool_choice=None if tools is None else tools.choice,
        parallel_tool_calls=True if tools is None else tools.parallel,
    )


def _end(msg: EndMessage | ResultMessage) -> GenerationEnd:
    # Anything but a normal end (cancelled, a hub-side error …) marks the answer incomplete.
    reason: FinishReason = (
        msg.finish_reason if msg.finish_reason in ("stop", "length") else "cancelled"  # type: ignore[assignment]
    )
    return GenerationEnd(
        finish_reason=reason,
        prompt_tokens=msg.usage.prompt_tokens,
        completion_tokens=msg.usage.completion_tokens,
    )


async def cloud_events(
    uplink: Uplink,
    req: InferRequest,
    *,
    hub: HubLink,
    call: GenAiCall | None = None,
) -> AsyncIterator[Event]:
    """The hub's answer to ``req`` as events, once its first message is in (see module doc)."""
    if not req.stream:
        with call.current() if call is not None else contextlib.nullcontext():
            result = await uplink.complete(req, timeout=hub.request_timeout_s)
        return _whole(result, req.model, call)
    messages = uplink.stream_messages(
        req, timeout=hub.chunk_timeout_s, first_chunk_timeout=hub.first_chunk_timeout_s
    )
    try:
        # The request is published on the first step: inject ``call``'s span as its parent.
        with call.current() if call is not None else contextlib.nullcontext():
            first = await anext(messages)
    except BaseException:
        with contextlib.suppress(Exception):
            await messages.aclose()
        raise
    if call is not None:
        call.first_token()
    return _streamed(first, messages, req.model, call)


async def _whole(result: ResultMessage, model: str, call: GenAiCall | None) -> AsyncIterator[Event]:
    end = _end(result)
    finish_call(call, result.model or model, end)
    yield Start(result.model or model)
    pieces = token_pieces(result.text, result.logprobs)
    if pieces:
        yield Pieces(pieces)
    yield end


async def _streamed(
    first: ChunkMessage | EndMessage,
    rest: AsyncGenerator[ChunkMessage | EndMessage, None],
    model: str,
    call: GenAiCall | None,
) -> AsyncIterator[Event]:
    try:
        yield Start(model)
        item: ChunkMessage | EndMessage | None = first
        while item is not None:
            if isinstance(item, EndMessage):
                end = _end(item)
                finish_call(call, model, end)
                yield end
                return
            if item.text:
                yield Pieces(token_pieces(item.text, item.logprobs))
            item = await anext(rest, None)
        yield Failure(502, "cloud_failed", "the hub's stream ended without a final message")
    except UplinkError as exc:
        log.warning("cloud stream failed mid-answer: %s", exc)
        if call is not None:
            call.fail("cloud_failed", str(exc))
        yield Failure(502, "cloud_failed", f"the hub failed mid-answer: {exc}")
    finally:
        if call is not None:
            call.fail("incomplete")  # no-op when the stream finished
        with contextlib.suppress(Exception):
            await rest.aclose()
