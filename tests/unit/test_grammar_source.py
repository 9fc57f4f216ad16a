"""Grammar sources: schemas checked by name, carried over the wire unchanged."""

from __future__ import annotations

import pytest

from shared.errors import InvalidInput
from shared.protocol import sampling_params, wire_params
from shared.runtimes.grammar import JSON_OBJECT, MAX_SCHEMA_BYTES, gbnf_for, schema_source
from shared.runtimes.types import SamplingParams


def test_grammar_and_penalties_survive_the_wire() -> None:
    src = schema_source({"type": "object", "properties": {"a": {"type": "integer"}}})
    params = SamplingParams(grammar=src, frequency_penalty=0.5, presence_penalty=-0.5)
    assert sampling_params(wire_params(params)) == params


@pytest.mark.parametrize("keyword", ["minimum", "multipleOf", "not", "if", "patternProperties"])
def test_unenforceable_keywords_are_named(keyword: str) -> None:
    with pytest.raises(InvalidInput, match=keyword):
        schema_source({"type": "object", "properties": {"x": {"type": "number", keyword: 1}}})


def test_oversized_schema_is_refused_before_converting() -> None:
    big = {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}
    with pytest.raises(InvalidInput, match="bytes"):
        schema_source(big)


def test_json_object_grammar_roots_at_an_object() -> None:
    assert "root   ::= object" in gbnf_for(JSON_OBJECT)
