"""Grammar sources for constrained decoding: JSON schemas checked, bounded and turned into GBNF.

A *grammar source* (``SamplingParams.grammar``) is either :data:`JSON_OBJECT` (any JSON object)
or the text of a JSON schema. It travels as text (over the wire too) and is compiled to GBNF by
the runtime that samples with it (llama.cpp's converter, ``llama_cpp.llama_grammar``)::

    source = schema_source({"type": "object", "properties": {"a": {"type": "integer"}}})
    gbnf = gbnf_for(source)          # cached; InvalidInput names what cannot be expressed

The converter silently drops keywords it cannot express (``minimum``, ``not``, ``uniqueItems`` …),
which would make "matches the schema" a lie, so :func:`check_schema` refuses them by name.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from shared.errors import InvalidInput

__all__ = [
    "JSON_OBJECT",
    "MAX_SCHEMA_BYTES",
    "PROSE_OR",
    "check_schema",
    "gbnf_for",
    "schema_source",
]

JSON_OBJECT = "json_object"
"""The grammar source of ``response_format={"type": "json_object"}``: any JSON object."""

PROSE_OR = "prose|"
"""Prefix of a grammar source that also allows prose: text whose first character is not ``{``
or blank (tool calls with ``tool_choice="auto"``, ``shared.tool_calls``), or the schema's JSON."""

MAX_SCHEMA_BYTES = 64 * 1024
"""The largest schema text accepted (compile time grows with it; bigger ones are a 400)."""

MAX_DEPTH = 32
"""The deepest nesting a schema may have."""

# Keywords the converter turns into grammar rules.
_CONSTRAINING = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "pattern",
        "format",
        "minLength",
        "maxLength",
    }
)
# Keywords that only annotate or hold definitions: nothing to constrain.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "strict",
    }
)
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)


def _bad(path: str, what: str) -> InvalidInput:
    return InvalidInput(f"the JSON schema cannot be enforced at {path or '/'}: {what}")


def check_schema(schema: Any, path: str = "", depth: int = 0) -> None:
    """Raise :class:`InvalidInput` naming the first keyword or shape that cannot be enforced."""
    if depth > MAX_DEPTH:
        raise _bad(path, f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(schema, bool):
        if not schema:
            raise _bad(path, "the schema `false` matches nothing")
        return
    if not isinstance(schema, dict):
        raise _bad(path, f"a schema must be an object, not {type(schema).__name__}")
    for key in schema:
        if key not in _CONSTRAINING and key not in _ANNOTATIONS:
            raise _bad(path, f"unsupported keyword {key!r}")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _TYPES:
            raise _bad(path, f"unknown type {k!r}")
    if isinstance(kind, list) and len(schema) > 1 and set(schema) - {"type"} - _ANNOTATIONS:
        raise _bad(path, "a list of types combined with other keywords")
    fmt = schema.get("format")
    if fmt is not None and fmt not in _FORMATS:
        raise _bad(path, f"unsupported format {fmt!r} (supported: {', '.join(sorted(_FORMATS))})")
    if "pattern" in schema and ({"minLength", "maxLength", "format"} & set(schema)):
        raise _bad(path, "`pattern` combined with minLength/maxLength/format")
    if ("minLength" in schema or "maxLength" in schema) and kind != "string":
        raise _bad(path, 'minLength/maxLength need "type": "string"')
    if "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise _bad(path, f"only local $ref values (#/…) are supported, not {ref!r}")
    if "allOf" in schema:
        for i, part in enumerate(schema["allOf"]):
            if (
                not isinstance(part, dict)
                or set(part) - {"properties", "required", "$ref", "anyOf"} - _ANNOTATIONS
            ):
                raise _bad(
                    f"{path}/allOf/{i}", "allOf parts may only hold properties, required, $ref"
                )
    if (
        "additionalProperties" in schema
        and "properties" not in schema
        and kind not in ("object", None)
    ):
        raise _bad(path, 'additionalProperties needs "type": "object"')
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_schema(sub, f"{path}/{key}/{name}", depth + 1)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key) or []):
            check_schema(sub, f"{path}/{key}/{i}", depth + 1)
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            check_schema(sub, f"{path}/{key}", depth + 1)
        elif isinstance(sub, list):
            for i, item in enumerate(sub):
                check_schema(item, f"{path}/{key}/{i}", depth + 1)


def schema_source(schema: Any) -> str:
    """The grammar source of ``schema``, checked (:class:`InvalidInput` if it cannot be enforced)."""
    text = json.dumps(schema, separators=(",", ":"), sort_keys=False)
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise InvalidInput(
            f"the JSON schema is {len(text.encode())} bytes; at most {MAX_SCHEMA_BYTES} are accepted"
        )
    check_schema(schema)
    gbnf_for(text)  # fail now (a 400), not in the middle of generating
    return text


@functools.lru_cache(maxsize=128)
def gbnf_for(source: str) -> str:
    """GBNF text for a grammar source; :class:`InvalidInput` when it cannot be converted."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if source == JSON_OBJECT:
        return JSON_GBNF  # its root is an object
    if source.startswith(PROSE_OR):
        call = gbnf_for(source[len(PROSE_OR) :])
        renamed = re.sub(r"^root ::=", "call-root ::=", call, count=1, flags=re.MULTILINE)
        return renamed + "\nroot ::= call-root | prose\nprose ::= [^{ \\t\\r\\n] [^\\x00]*\n"
    if len(source.encode()) > MAX_SCHEMA_BYTES:
        raise InvalidInput(f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        schema = json.loads(source)
    except ValueError as exc:
        raise InvalidInput(f"the JSON schema is not valid JSON: {exc}") from None
    check_schema(schema)
    try:
        return str(json_schema_to_gbnf(source))
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidInput(f"the JSON schema cannot be turned into a grammar: {exc}") from None
