"""Tool calling in a generic format, for models whose chat template has none (pure).

The declared functions go into a system-prompt block; the model answers with one JSON object,
``{"tool_calls": [{"name": …, "arguments": {…}}]}``, which a grammar (a JSON schema made from the
declared functions, compiled by ``shared.runtimes.grammar``) constrains to those functions and
their parameter schemas. ``tool_choice``:

- ``required`` or a named function: the grammar forces a call (to that function);
- ``auto``: the grammar allows prose (whose first character is not ``{`` or blank) or a call;
- ``none``: no tools in the prompt, no grammar.

``parallel_tool_calls=false`` allows at most one call. The edge and the hub's GGUF back-end use the
same functions::

    spec = ToolSpec.make(tools, choice="required", parallel=True)   # InvalidInput names the problem
    messages = render_messages(messages, spec)
    grammar = grammar_source(spec)
    calls = parse_calls(text, spec)      # None: prose; MalformedCall: not a valid call
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput
from shared.runtimes.grammar import PROSE_OR, check_schema, schema_source

__all__ = [
    "MAX_PARALLEL_CALLS",
    "MalformedCall",
    "ParsedCall",
    "ToolSpec",
    "call_text",
    "grammar_source",
    "new_call_id",
    "openai_tool_calls",
    "parse_calls",
    "render_messages",
    "tool_prompt",
]

_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}

MAX_PARALLEL_CALLS = 4
"""The most calls one answer may make (``parallel_tool_calls=false``: one); a small model that
repeats a call would otherwise write calls until ``max_tokens`` cut the JSON short."""


class MalformedCall(InvalidInput):
    """Generated text that should be a tool call and is not a valid one."""


@dataclass(frozen=True)
class ParsedCall:
    """One call: a declared function's name and its (schema-valid) arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    """The declared functions, ``tool_choice`` and ``parallel_tool_calls`` of one request."""

    functions: tuple[Mapping[str, Any], ...]
    """OpenAI ``function`` objects: ``name``, optional ``description`` and ``parameters``."""
    choice: str = "auto"
    """``auto``, ``none``, ``required``, or the name of the one function to call."""
    parallel: bool = True

    @classmethod
    def make(
        cls, functions: Sequence[Mapping[str, Any]], *, choice: str | None, parallel: bool | None
    ) -> ToolSpec:
        """A checked spec: :class:`InvalidInput` names a duplicate, a bad schema or a bad choice."""
        seen: set[str] = set()
        for fn in functions:
            name = fn.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidInput("every tool needs a function name")
            if name in seen:
                raise InvalidInput(f"two tools are named {name!r}; names must be unique")
            seen.add(name)
            _check_parameters(name, fn.get("parameters"))
        spec = cls(tuple(functions), choice or "auto", True if parallel is None else parallel)
        if spec.choice not in ("auto", "none", "required") and spec.choice not in seen:
            raise InvalidInput(
                f"tool_choice names the function {spec.choice!r}, which is not in `tools` "
                f"({', '.join(sorted(seen)) or 'none declared'})"
            )
        if spec.choice == "required" and not seen:
            raise InvalidInput('tool_choice "required" needs at least one tool in `tools`')
        return spec

    @property
    def calling(self) -> list[Mapping[str, Any]]:
        """The functions the model may call now (none for ``none``; one for a named choice)."""
        if self.choice == "none":
            return []
        if self.choice in ("auto", "required"):
            return list(self.functions)
        return [f for f in self.functions if f["name"] == self.choice]

    @property
    def forced(self) -> bool:
        """Whether the answer must be a call (``required`` or a named function)."""
        return self.choice not in ("auto", "none")


def _parameters(fn: Mapping[str, Any]) -> dict[str, Any]:
    params = fn.get("parameters")
    return dict(params) if params else dict(_EMPTY_PARAMETERS)


def _check_parameters(name: str, params: Any) -> None:
    if params is None:
        return
    where = f"the parameters of tool {name!r}"
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise InvalidInput(f'{where} must be a JSON schema with "type": "object"')
    try:
        from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
        from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

        Draft202012Validator.check_schema(params)
    except SchemaError as exc:
        raise InvalidInput(f"{where} are not a valid JSON schema: {exc.message}") from None
    try:
        check_schema(params)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def call_schema(spec: ToolSpec) -> dict[str, Any]:
    """The JSON schema of a call answer: ``{"tool_calls": [...]}`` to the callable functions."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, "arguments": _parameters(fn)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for fn in spec.calling
    ]
    items: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    calls: dict[str, Any] = {"type": "array", "items": items, "minItems": 1}
    calls["maxItems"] = MAX_PARALLEL_CALLS if spec.parallel else 1
    return {
        "type": "object",
        "properties": {"tool_calls": calls},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }


def grammar_source(spec: ToolSpec) -> str | None:
    """The grammar source that constrains the answer (``None`` for ``tool_choice="none"``)."""
    if not spec.calling:
        return None
    source = schema_source(call_schema(spec))
    return source if spec.forced else PROSE_OR + source


def system_block(spec: ToolSpec, *, listed: bool = True) -> str:
    """The system-prompt text that declares the callable functions (unless the chat template
    lists them: ``listed=False``) and the answer format."""
    lines = ["You can call these functions:"] if listed else []
    for fn in spec.calling if listed else []:
        doc = f": {fn['description']}" if fn.get("description") else ""
        lines.append(f"- {fn['name']}{doc}")
        lines.append(f"  parameters: {json.dumps(_parameters(fn), separators=(',', ':'))}")
    many = "one or more calls" if spec.parallel else "exactly one call"
    lines.append(
        'To call functions, answer only with JSON: {"tool_calls": [{"name": "<function>", '
        f'"arguments": {{...}}}}]}} ({many}).'
    )
    if not spec.forced:
        lines.append("Otherwise answer in plain text.")
    return "\n".join(lines)


def render_messages(
    messages: Sequence[Mapping[str, Any]], spec: ToolSpec | None, *, template_tools: bool = False
) -> list[dict[str, str]]:
    """Plain ``role``/``content`` messages: the tool block in the system message, calls and
    results written out in the generic format (assistant ``tool_calls``, ``tool`` messages).

    ``template_tools``: the chat template lists the tools (``prepare_chat(tools=…)``), so the
    block only says how to answer."""
    names: dict[str, str] = {}
    out: list[dict[str, str]] = []
    for m in messages:
        role, content = str(m["role"]), str(m.get("content") or "")
        calls = m.get("tool_calls")
        if role == "assistant" and calls:
            for c in calls:
                names[c["id"]] = c["function"]["name"]
            wrote = [
                {"name": c["function"]["name"], "arguments": _loads(c["function"]["arguments"])}
                for c in calls
            ]
            content = (content + "\n" if content else "") + call_text(wrote)
        elif role == "tool":
            call_id = m.get("tool_call_id") or ""
            content = f"Result of {names.get(call_id, 'the function')} ({call_id}): {content}"
        out.append({"role": role, "content": content})
    if spec is not None and spec.calling:
        block = system_block(spec, listed=not template_tools)
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {"role": out[0]["role"], "content": out[0]["content"] + "\n\n" + block}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # fed back as the client sent it


def call_text(calls: Sequence[Mapping[str, Any]]) -> str:
    """The generic format of ``calls`` (``name``/``arguments`` mappings)."""
    return json.dumps(
        {"tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in calls]},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def parse_calls(text: str, spec: ToolSpec) -> list[ParsedCall] | None:
    """The calls in a generated answer; ``None`` when it is prose (allowed unless forced).

    :class:`MalformedCall` when it is not a valid call: bad JSON, an undeclared function,
    arguments that break the function's schema, more than one call without parallel calls.
    """
    body = text.strip()
    if not spec.calling or (not body.startswith("{") and not spec.forced):
        return None
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise MalformedCall(f"the model's tool call is not valid JSON ({exc})") from None
    raw = data.get("tool_calls") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not raw:
        raise MalformedCall('the model\'s answer has no "tool_calls" list')
    if len(raw) > 1 and not spec.parallel:
        raise MalformedCall(f"the model made {len(raw)} calls, but parallel_tool_calls is false")
    if len(raw) > MAX_PARALLEL_CALLS:
        raise MalformedCall(
            f"the model made {len(raw)} calls; at most {MAX_PARALLEL_CALLS} are taken"
        )
    allowed = {fn["name"]: fn for fn in spec.calling}
    calls = []
    for i, call in enumerate(raw):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise MalformedCall(f"tool call {i} has no function name")
        fn = allowed.get(call["name"])
        if fn is None:
            raise MalformedCall(f"tool call {i} names {call['name']!r}, which may not be called")
        args = call.get("arguments", {})
        if isinstance(args, str):  # an upstream's arguments string
            try:
                args = json.loads(args)
            except ValueError as exc:
                raise MalformedCall(
                    f"the arguments of tool call {i} ({fn['name']}) are not valid JSON ({exc})"
                ) from None
        if not isinstance(args, dict):
            raise MalformedCall(f"the arguments of tool call {i} ({fn['name']}) are not an object")
        _validate(args, _parameters(fn), fn["name"])
        calls.append(ParsedCall(fn["name"], args))
    return calls


def _validate(args: dict[str, Any], schema: dict[str, Any], name: str) -> None:
    from jsonschema import Draft202012Validator

    error = next(iter(Draft202012Validator(schema).iter_errors(args)), None)
    if error is not None:
        raise MalformedCall(
            f"the arguments of the call to {name!r} break its schema: {error.message}"
        )


def new_call_id() -> str:
    """A fresh tool-call id, ``call_…``."""
    return "call_" + secrets.token_hex(12)


def openai_tool_calls(calls: Sequence[ParsedCall]) -> list[dict[str, Any]]:
    """OpenAI ``message.tool_calls``: ids ``call_…``, arguments as JSON strings."""
    return [
        {
            "id": new_call_id(),
            "type": "function",
            "function": {
                "name": c.name,
                "arguments": json.dumps(c.arguments, separators=(",", ":"), ensure_ascii=False),
            },
        }
        for c in calls
    ]


def tool_prompt(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    choice: str | None,
    parallel: bool | None,
    *,
    template_tools: bool = False,
) -> tuple[list[dict[str, str]], str | None, list[Mapping[str, Any]] | None]:
    """A wire request's rendered messages, its tool grammar (``None``: no tools to call) and the
    functions for a chat template that lists tools (``template_tools``; else None).

    What the hub's GGUF back-end runs; :class:`InvalidInput` names a bad tool or choice."""
    spec = ToolSpec.make(tools, choice=choice, parallel=parallel) if tools else None
    grammar = grammar_source(spec) if spec is not None else None
    listed = spec.calling if spec is not None and template_tools and spec.calling else None
    return render_messages(messages, spec, template_tools=template_tools), grammar, listed
