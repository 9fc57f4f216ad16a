"""Verdicts and the pure rules that combine them (no Wasm here, so all of it unit-tests cheaply).

A hook's output is one JSON object:

    on_request:  {"action": "continue"}
                 {"action": "modify", "request": {"messages": [...], ...}, "target": "local_only"?}
                 {"action": "reject", "status": 400, "message": "..."}
                 {"action": "route", "target": "edge" | "cloud" | "local_only"}
    on_response: {"action": "continue", "hold": 0?}
                 {"action": "modify", "text": "...", "hold": 0?}
                 {"action": "reject", "status": 400, "message": "..."}

``hold`` (streamed text only) is how many trailing characters of the text may still be the
start of a match: an int from 0 to the plugin's ``stream_window_chars`` (``max_hold``).

``parse_verdict`` turns bytes into a ``Verdict`` or raises ``PluginOutputError`` (and nothing
else, whatever the bytes: a hostile verdict must reach the plugin's ``fail`` strategy, never
the client as a 500). It refuses JSON nested too deeply, strings with lone surrogates (they
cannot be sent as UTF-8), messages that are not objects, and a ``model`` that is not a sane name;
``order_key`` sorts plugins; ``merge_route`` combines route targets (``local_only`` wins,
then ``edge``, then ``cloud``: the target that keeps data closer wins).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from shared.plugins.errors import PluginOutputError
from shared.plugins.manifest import Hook, PluginManifest, phase_rank
from shared.reasons import RouteTarget

__all__ = [
    "MAX_MODEL_CHARS",
    "REQUEST_FIELDS",
    "ROUTE_STRENGTH",
    "Action",
    "RouteTarget",
    "Verdict",
    "merge_route",
    "order_key",
    "order_manifests",
    "parse_verdict",
]

Action = Literal["continue", "modify", "reject", "route"]

ROUTE_STRENGTH: dict[str, int] = {"cloud": 1, "edge": 2, "local_only": 3}
"""When plugins disagree, the stronger target wins."""

REQUEST_FIELDS = ("messages", "model", "metadata")
"""The request fields a plugin sees and may modify; the rest of the body passes through."""

MAX_MODEL_CHARS = 256
"""Longest model name a ``modify`` may set."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_ACTIONS: dict[str, frozenset[str]] = {
    "on_request": frozenset({"continue", "modify", "reject", "route"}),
    "on_response": frozenset({"continue", "modify", "reject"}),
}


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One plugin's answer to one hook call."""

    action: Action
    request: dict[str, Any] | None = None
    """``modify`` on_request: the new request fields."""
    text: str | None = None
    """``modify`` on_response: the new text."""
    status: int = 400
    """``reject``: the HTTP status to answer with."""
    message: str = ""
    """``reject``: why, for the client."""
    target: RouteTarget | None = None
    """``route`` (and optionally ``modify``): where the request must run."""
    hold: int | None = None
    """``continue``/``modify`` on_response: trailing characters a stream must not release yet
    (None: no hint, the plugin's whole ``stream_window_chars`` is held)."""


def _fail(name: str, hook: Hook, detail: str) -> PluginOutputError:
    return PluginOutputError(
        name, hook, detail + "; see wasm_plugins/ABI.md for the verdict shapes"
    )


def _lone_surrogate(doc: Any) -> bool:
    """True if any string (or key) in the parsed document cannot be encoded as UTF-8."""
    stack = [doc]
    while stack:  # iterative: the document may be as deep as json.loads allows
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _message_problem(index: int, message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"message {index} is not an object"
    role = message.get("role")
    if not isinstance(role, str) or not role:
        return f"message {index} needs a role string"
    content = message.get("content")
    if content is None or isinstance(content, str):
        return None
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return None  # OpenAI content parts
    return f"message {index} content must be a string or a list of content parts"


def _model_problem(model: Any) -> str | None:
    if (
        not isinstance(model, str)
        or not model.strip()
        or len(model) > MAX_MODEL_CHARS
        or _CONTROL.search(model)
    ):
        return (
            f"modify may set model only to a non-empty name of at most {MAX_MODEL_CHARS} "
            "characters without control characters"
        )
    return None


def _request_problem(request: Any) -> str | None:
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        return "modify needs a request object with a messages list"
    unknown = set(request) - set(REQUEST_FIELDS)
    if unknown:
        return f"modify may only change {REQUEST_FIELDS}, not {sorted(unknown)}"
    for index, message in enumerate(request["messages"]):
        if problem := _message_problem(index, message):
            return problem
    if "model" in request and (problem := _model_problem(request["model"])):
        return problem
    if "metadata" in request and not isinstance(request["metadata"], dict):
        return "modify metadata must be an object"
    return None


def _hold(doc: dict[str, Any], plugin: str, max_hold: int) -> int | None:
    if "hold" not in doc:
        return None
    hold = doc["hold"]
    if not isinstance(hold, int) or isinstance(hold, bool) or not 0 <= hold <= max_hold:
        raise _fail(
            plugin,
            "on_response",
            f"hold must be an integer from 0 to {max_hold} (the manifest's stream_window_chars), "
            f"not {hold!r}",
        )
    return hold


def parse_verdict(raw: bytes, *, hook: Hook, plugin: str = "plugin", max_hold: int = 0) -> Verdict:
    """Validate a hook's output and return its verdict; raises ``PluginOutputError`` if invalid.

    ``max_hold`` is the largest ``hold`` an on_response verdict may give (the plugin's
    ``stream_window_chars``).
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        shown = raw[:80].decode("utf-8", "replace")
        raise _fail(plugin, hook, f"output is not JSON: {shown!r}") from None
    except RecursionError:
        raise _fail(plugin, hook, "output is nested too deeply to be a verdict") from None
    if not isinstance(doc, dict):
        raise _fail(plugin, hook, "output is not a JSON object")
    if _lone_surrogate(doc):
        raise _fail(plugin, hook, "output has a lone surrogate (\\ud800-\\udfff), not UTF-8 text")
    action = doc.get("action")
    if action not in _ACTIONS[hook]:
        allowed = ", ".join(sorted(_ACTIONS[hook]))
        raise _fail(plugin, hook, f"unknown action {action!r} (allowed here: {allowed})")
    target = doc.get("target")
    if target is not None and target not in ROUTE_STRENGTH:
        raise _fail(plugin, hook, f"unknown route target {target!r} (edge, cloud or local_only)")
    if action == "route":
        if target is None:
            raise _fail(plugin, hook, "a route verdict needs a target")
        return Verdict(action="route", target=target)
    if action == "reject":
        status = doc.get("status", 400)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise _fail(plugin, hook, f"reject status must be an integer 400-599, not {status!r}")
        message = doc.get("message", "")
        if not isinstance(message, str):
            raise _fail(plugin, hook, "reject message must be a string")
        return Verdict(action="reject", status=status, message=message or f"rejected by {plugin}")
    if action == "modify" and hook == "on_request":
        request = doc.get("request")
        if problem := _request_problem(request):
            raise _fail(plugin, hook, problem)
        return Verdict(action="modify", request=request, target=target)
    hold = _hold(doc, plugin, max_hold) if hook == "on_response" else None
    if action == "modify":
        text = doc.get("text")
        if not isinstance(text, str):
            raise _fail(plugin, hook, "modify needs a text string")
        return Verdict(action="modify", text=text, hold=hold)
    return Verdict(action="continue", hold=hold)


def order_key(manifest: PluginManifest) -> tuple[int, int, str]:
    """Sort key: phase rank ascending, then priority descending (like Istio), then name."""
    return (phase_rank(manifest.phase), -manifest.priority, manifest.name)


def order_manifests(manifests: Iterable[PluginManifest]) -> list[PluginManifest]:
    """Manifests in on_request order (on_response runs the reverse, like Envoy's filters)."""
    return sorted(manifests, key=order_key)


def merge_route(current: RouteTarget | None, new: RouteTarget | None) -> RouteTarget | None:
    """Combine two route targets: ``local_only`` beats ``edge`` beats ``cloud``; None is no opinion."""
    if current is None:
        return new
    if new is None:
        return current
    return new if ROUTE_STRENGTH[new] > ROUTE_STRENGTH[current] else current
