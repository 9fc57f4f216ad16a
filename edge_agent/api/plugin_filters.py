"""Running the Wasm plugin chain on the request path (``on_request``) and on answers (``on_response``).

Each request takes the chain once, so a hot reload mid-request never mixes two chains.
Plugin calls block (up to a plugin's ``timeout_ms``), so they run off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_agent.errors import ApiError
from shared.plugins import PluginChain, PluginRejectedError, ResponseStream, RouteTarget
from shared.telemetry import plugin_span, record_plugin_error

if TYPE_CHECKING:
    from edge_agent.api.app import AgentState


@dataclass
class FilteredRequest:
    """The request after ``on_request``: possibly modified text, and a route hint."""

    messages: list[dict[str, Any]] | None
    prompt_text: str | None
    route: RouteTarget | None
    chain: PluginChain | None


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
        return FilteredRequest(messages, prompt_text, None, None)
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
        result = await asyncio.to_thread(chain.on_request, body)
    _record(result)
    if result.rejected:
        raise ApiError(
            result.status or 400,
            result.message or f"rejected by plugin {result.rejected_by}",
            code="plugin_rejected",
            param=None,
        )
    new_messages = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
        for m in result.request.get("messages", as_messages)
    ]
    if messages is None:
        text = (
            "".join(m["content"] for m in new_messages if m["role"] == "user")
            if result.modified
            else prompt_text
        )
        return FilteredRequest(None, text, result.route_target, chain)
    return FilteredRequest(new_messages, None, result.route_target, chain)


class ResponseFilter:
    """Applies ``on_response`` to a whole answer or, window by window, to a stream."""

    def __init__(self, chain: PluginChain, *, window: int = 64) -> None:
        self._chain = chain
        self._stream: ResponseStream = chain.response_stream(window=window)

    def whole(self, text: str) -> str:
        """Filter a complete answer; raises :class:`ApiError` when a plugin rejects it."""
        with plugin_span("chain", "on_response"):
            result = self._chain.on_response(text)
        _record(result)
        if result.rejected:
            raise ApiError(
                result.status or 500,
                result.message or f"answer rejected by plugin {result.rejected_by}",
                code="plugin_rejected",
            )
        return result.text

    def feed(self, text: str) -> str:
        """Filter streamed text; may hold text back; raises PluginRejectedError."""
        return self._stream.feed(text)

    def close(self) -> str:
        """Release what is held back at the end of the stream."""
        return self._stream.close()


__all__ = ["FilteredRequest", "PluginRejectedError", "ResponseFilter", "filter_request"]
