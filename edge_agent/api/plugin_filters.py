"""Running the Wasm plugin chain on the request path (``on_request``) and on answers (``on_response``).

    filtered = await filter_request(state, model=..., messages=..., prompt_text=...)
    events = filter_events(events, filtered.chain, stream=True, pool=state.plugin_workers)

Each request takes the chain once, so a hot reload mid-request never mixes two chains.
Plugin calls block (up to a plugin's ``timeout_ms``), so every one of them runs on the agent's
bounded worker pool, never on the event loop. ``filter_events`` is a stage between an executor
and the formatter: it rewrites the text of the answer's events (a rewritten piece loses its
log-probabilities) and turns a plugin's reject into a ``Failure`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from edge_agent.api.state import AgentState
from edge_agent.errors import ApiError
from edge_agent.execute.events import Event, Failure, GenerationEnd, Pieces, TokenPiece
from shared.plugins import PluginChain, PluginRejectedError, ResponseStream
from shared.reasons import RouteTarget
from shared.telemetry import plugin_span, record_plugin_error

T = TypeVar("T")


@dataclass
class FilteredRequest:
    """The request after ``on_request``: possibly modified text, and a route hint."""

    messages: list[dict[str, Any]] | None
    prompt_text: str | None
    route: RouteTarget | None
    chain: PluginChain | None
    model: str
    """The model to answer with: the client's, or the one a plugin's ``modify`` set."""


def _record(result: Any) -> None:
    for outcome in getattr(result, "trace", ()):
        error = getattr(outcome, "error", None)
        if error:
            kind = "timeout" if "timeout" in str(error).lower() else "error"
            record_plugin_error(getattr(outcome, "plugin", "?"), kind)


async def filter_request(
    state: AgentState, *, model: str, messages: list[dict[str, Any]] | None, prompt_text: str | None
) -> FilteredRequest:
    """Run ``on_request``; a reject becomes an :class:`ApiError` with the plugin's status."""
    watcher = state.plugins
    if watcher is None:
        return FilteredRequest(messages, prompt_text, None, None, model)
    chain = watcher.chain
    as_messages = (
        messages if messages is not None else [{"role": "user", "content": prompt_text or ""}]
    )
    body = {
        "messages": as_messages,
        "model": model,
        "metadata": {"device": state.settings.device_id},
    }
    with plugin_span("chain", "on_request"):
        result = await _off_loop(state.plugin_workers, chain.on_request, body)
    _record(result)
    if result.rejected:
        raise ApiError(
            result.status or 400,
            result.message or f"rejected by plugin {result.rejected_by}",
            code="plugin_rejected",
            param=None,
        )
    request = result.request
    raw = request.get("messages", as_messages)
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise ApiError(
            502,
            "an on_request plugin returned messages that are not a list of objects; "
            "check the plugin (edge-agent plugins test)",
            type="server_error",
            code="plugin_error",
        )
    new_messages = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in raw
    ]
    grown = sum(len(m["content"]) for m in new_messages)
    if grown > state.settings.max_body_bytes:
        raise ApiError(
            413,
            f"on_request plugins grew the request to {grown} characters, over max_body_bytes "
            f"({state.settings.max_body_bytes})",
            code="plugin_output_too_large",
        )
    new_model = request.get("model", model)
    if not isinstance(new_model, str) or not new_model.strip():
        new_model = model
    if messages is None:
        text = (
            "".join(m["content"] for m in new_messages if m["role"] == "user")
            if result.modified
            else prompt_text
        )
        return FilteredRequest(None, text, result.route_target, chain, new_model)
    return FilteredRequest(new_messages, None, result.route_target, chain, new_model)


async def _off_loop(pool: Executor, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _rejected(message: str, status: int | None) -> Failure:
    return Failure(status or 500, "plugin_rejected", message, type="invalid_request_error")


async def filter_events(
    events: AsyncIterator[Event], chain: PluginChain | None, *, stream: bool, pool: Executor
) -> AsyncIterator[Event]:
    """``events`` with their text passed through the chain's ``on_response`` hooks.

    Streamed, each piece of text is filtered as it comes (plugins may hold some back until the
    end); not streamed, the whole answer is filtered once at the end.
    """
    if chain is None or not chain.has_response_hooks:
        async for event in events:
            yield event
        return
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        if stream:
            async for event in _filter_stream(events, chain, pool):
                yield event
        else:
            async for event in _filter_whole(events, chain, pool):
                yield event


async def _filter_stream(
    events: AsyncIterator[Event], chain: PluginChain, pool: Executor
) -> AsyncIterator[Event]:
    window = ResponseStream(chain)
    try:
        async for event in events:
            if isinstance(event, Pieces):
                text = await _off_loop(pool, window.feed, event.text)
                if text:
                    yield Pieces([TokenPiece(text=text, token_id=-1)])
                continue
            if isinstance(event, GenerationEnd):
                tail = await _off_loop(pool, window.close)
                if tail:
                    yield Pieces([TokenPiece(text=tail, token_id=-1)])
            yield event
    except PluginRejectedError as exc:
        yield _rejected(exc.message, None)


async def _filter_whole(
    events: AsyncIterator[Event], chain: PluginChain, pool: Executor
) -> AsyncIterator[Event]:
    held: list[Pieces] = []
    async for event in events:
        if isinstance(event, Pieces):
            held.append(event)
            continue
        if isinstance(event, GenerationEnd):
            answer = "".join(p.text for p in held)
            with plugin_span("chain", "on_response"):
                result = await _off_loop(pool, chain.on_response, answer)
            _record(result)
            if result.rejected:
                yield _rejected(
                    result.message or f"answer rejected by plugin {result.rejected_by}",
                    result.status,
                )
                return
            if result.text != answer:
                held = [Pieces([TokenPiece(text=result.text, token_id=-1)])]
        for pieces in held:
            yield pieces
        held = []
        yield event


__all__ = ["FilteredRequest", "filter_events", "filter_request"]
