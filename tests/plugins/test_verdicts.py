"""The pure rules: verdict parsing, ordering, route merging (no Wasm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.plugins import PluginManifest, PluginOutputError, merge_route, order_manifests
from shared.plugins.verdicts import parse_verdict


def _manifest(name: str, phase: str | int, priority: int) -> PluginManifest:
    return PluginManifest(
        name=name,
        version="1",
        sha256="0" * 64,
        hooks=("on_request",),
        phase=phase,
        priority=priority,
        path=Path(f"{name}.plugin.toml"),
    )


def test_order_is_phase_then_higher_priority_then_name() -> None:
    manifests = [
        _manifest("router", "route", 100),
        _manifest("b", "filter", 1),
        _manifest("a", "filter", 1),
        _manifest("auth", "authn", -5),
        _manifest("urgent", "filter", 50),
        _manifest("numeric", 250, 0),  # between authz (200) and filter (300)
    ]
    assert [m.name for m in order_manifests(manifests)] == [
        "auth",
        "numeric",
        "urgent",
        "a",
        "b",
        "router",
    ]


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        (None, None, None),
        (None, "cloud", "cloud"),
        ("cloud", None, "cloud"),
        ("cloud", "edge", "edge"),
        ("edge", "cloud", "edge"),
        ("cloud", "local_only", "local_only"),
        ("local_only", "cloud", "local_only"),
        ("local_only", "edge", "local_only"),
    ],
)
def test_local_only_wins_over_any_other_route(
    a: str | None, b: str | None, winner: str | None
) -> None:
    assert merge_route(a, b) == winner  # type: ignore[arg-type]


def test_valid_verdicts_parse() -> None:
    assert parse_verdict(b'{"action":"continue"}', hook="on_request").action == "continue"
    route = parse_verdict(b'{"action":"route","target":"local_only"}', hook="on_request")
    assert route.target == "local_only"
    reject = parse_verdict(b'{"action":"reject","status":403,"message":"no"}', hook="on_request")
    assert (reject.status, reject.message) == (403, "no")
    modify = parse_verdict(b'{"action":"modify","request":{"messages":[]}}', hook="on_request")
    assert modify.request == {"messages": []}
    text = parse_verdict(b'{"action":"modify","text":"x"}', hook="on_response")
    assert text.text == "x"


@pytest.mark.parametrize(
    ("raw", "hook", "complaint"),
    [
        (b"not json", "on_request", "not JSON"),
        (b"[1]", "on_request", "not a JSON object"),
        (b'{"action":"explode"}', "on_request", "unknown action 'explode'"),
        (b'{"action":"route","target":"cloud"}', "on_response", "unknown action 'route'"),
        (b'{"action":"route","target":"mars"}', "on_request", "unknown route target"),
        (b'{"action":"route"}', "on_request", "needs a target"),
        (b'{"action":"reject","status":200}', "on_request", "400-599"),
        (
            b'{"action":"modify","request":{"stream":true,"messages":[]}}',
            "on_request",
            "may only change",
        ),
        (b'{"action":"modify"}', "on_response", "text string"),
    ],
)
def test_invalid_verdicts_are_refused_with_the_reason(
    raw: bytes, hook: str, complaint: str
) -> None:
    with pytest.raises(PluginOutputError, match=complaint) as info:
        parse_verdict(raw, hook=hook, plugin="p")  # type: ignore[arg-type]
    assert "plugin p" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "hook", "complaint"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "on_request", "nested too deeply"),
        (b'{"action":"reject","status":400,"message":"\\ud800"}', "on_request", "surrogate"),
        (b'{"action":"modify","text":"a\\udfffb"}', "on_response", "surrogate"),
        (
            b'{"action":"modify","request":{"messages":[{"role":"user","content":"\\ud83d"}]}}',
            "on_request",
            "surrogate",
        ),
        (b'{"action":"modify","request":{"messages":[1,"x"]}}', "on_request", "message 0"),
        (
            b'{"action":"modify","request":{"messages":[{"role":7,"content":"x"}]}}',
            "on_request",
            "role",
        ),
        (
            b'{"action":"modify","request":{"messages":[{"role":"user","content":{"a":1}}]}}',
            "on_request",
            "content",
        ),
        (b'{"action":"modify","request":{"messages":[],"metadata":[]}}', "on_request", "metadata"),
    ],
)
def test_hostile_verdicts_are_refused_not_raised(raw: bytes, hook: str, complaint: str) -> None:
    # Anything else than PluginOutputError would escape the chain's fail strategy (a 500).
    with pytest.raises(PluginOutputError, match=complaint):
        parse_verdict(raw, hook=hook, plugin="p")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "model",
    ["", "   ", "x" * 257, 7, None, ["m"], "bad\nmodel", "bad\x00model"],
)
def test_modify_of_model_must_be_a_sane_string(model: object) -> None:
    raw = json.dumps({"action": "modify", "request": {"messages": [], "model": model}})
    with pytest.raises(PluginOutputError, match="model"):
        parse_verdict(raw.encode(), hook="on_request", plugin="p")


def test_modify_of_model_keeps_a_valid_name() -> None:
    raw = b'{"action":"modify","request":{"messages":[],"model":"qwen2.5:7b-instruct"}}'
    verdict = parse_verdict(raw, hook="on_request", plugin="p")
    assert verdict.request == {"messages": [], "model": "qwen2.5:7b-instruct"}
