"""Chain semantics with real modules: ordering, merging, bad output, fail strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.plugins import PluginChain
from tests.plugins.conftest import fixed, request

CONTINUE = {"action": "continue"}


def test_plugins_run_by_phase_then_priority(plugin_dir: Path) -> None:
    fixed(plugin_dir, "router", CONTINUE, phase="route", priority=1000)
    fixed(plugin_dir, "low", CONTINUE, phase="filter", priority=1)
    fixed(plugin_dir, "high", CONTINUE, phase="filter", priority=10)
    fixed(plugin_dir, "auth", CONTINUE, phase="authn", priority=-1)
    fixed(plugin_dir, "both", CONTINUE, phase="stats", hooks=["on_request", "on_response"])
    fixed(plugin_dir, "resp", {"action": "continue"}, phase="authn", hooks=["on_response"])
    chain = PluginChain.from_directory(plugin_dir)
    assert [o.plugin for o in chain.on_request(request("x")).trace] == [
        "auth",
        "high",
        "low",
        "router",
        "both",
    ]
    assert [o.plugin for o in chain.on_response("x").trace] == ["both", "resp"]  # reversed


def test_local_only_from_any_plugin_wins(plugin_dir: Path) -> None:
    fixed(plugin_dir, "a", {"action": "route", "target": "local_only"}, phase="authn")
    fixed(plugin_dir, "b", {"action": "route", "target": "cloud"}, phase="route")
    assert (
        PluginChain.from_directory(plugin_dir).on_request(request("x")).route_target == "local_only"
    )


def test_modify_feeds_the_next_plugin_and_reject_stops(plugin_dir: Path) -> None:
    new = {"messages": [{"role": "user", "content": "rewritten"}], "model": "other"}
    fixed(plugin_dir, "rewrite", {"action": "modify", "request": new}, phase="authn")
    fixed(plugin_dir, "deny", {"action": "reject", "status": 403, "message": "no"}, phase="filter")
    fixed(plugin_dir, "never", {"action": "route", "target": "cloud"}, phase="route")
    result = PluginChain.from_directory(plugin_dir).on_request(request("x"))
    assert (result.rejected, result.status, result.message, result.rejected_by) == (
        True,
        403,
        "no",
        "deny",
    )
    assert [o.plugin for o in result.trace] == ["rewrite", "deny"]


def test_modify_changes_only_plugin_visible_fields(plugin_dir: Path) -> None:
    new = {"messages": [{"role": "user", "content": "rewritten"}], "model": "other"}
    fixed(plugin_dir, "rewrite", {"action": "modify", "request": new})
    body = {**request("x"), "max_tokens": 7}
    result = PluginChain.from_directory(plugin_dir).on_request(body)
    assert result.modified
    assert result.request["messages"] == new["messages"] and result.request["model"] == "other"
    assert result.request["max_tokens"] == 7
    assert body["messages"][0]["content"] == "x"  # the caller's body is not mutated


@pytest.mark.parametrize("output", ["this is not json", '{"action":"launch_missiles"}'])
@pytest.mark.parametrize("fail", ["open", "closed"])
def test_invalid_output_goes_to_the_fail_strategy(plugin_dir: Path, output: str, fail: str) -> None:
    fixed(plugin_dir, "broken", output, fail=fail)
    result = PluginChain.from_directory(plugin_dir).on_request(request("x"))
    assert result.trace[0].action == "error"
    assert result.rejected == (fail == "closed")
    if fail == "closed":
        assert result.status == 503 and "broken" in (result.message or "")


def test_response_modify_and_fail_closed(plugin_dir: Path) -> None:
    fixed(plugin_dir, "upper", {"action": "modify", "text": "REPLACED"}, hooks=["on_response"])
    chain = PluginChain.from_directory(plugin_dir)
    assert chain.on_response("anything").text == "REPLACED"
    fixed(plugin_dir, "bad", "nope", hooks=["on_response"], fail="closed", phase="authn")
    result = PluginChain.from_directory(plugin_dir).on_response("anything")
    assert result.rejected and result.rejected_by == "bad" and result.status == 503


def test_empty_directory_is_an_empty_chain(plugin_dir: Path) -> None:
    result = PluginChain.from_directory(plugin_dir).on_request(request("x"))
    assert (result.rejected, result.modified, result.route_target, result.trace) == (
        False,
        False,
        None,
        (),
    )


HOSTILE_VERDICTS = {
    "nested_100k": "[" * 100_000 + "]" * 100_000,
    "surrogate_reject": '{"action":"reject","status":400,"message":"no \\ud800"}',
    "surrogate_modify": '{"action":"modify","request":{"messages":'
    '[{"role":"user","content":"\\udc00"}]}}',
    "non_object_messages": '{"action":"modify","request":{"messages":["hi",[1],null]}}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_VERDICTS))
@pytest.mark.parametrize("fail", ["open", "closed"])
def test_hostile_request_verdict_goes_to_the_fail_strategy(
    plugin_dir: Path, case: str, fail: str
) -> None:
    fixed(plugin_dir, "hostile", HOSTILE_VERDICTS[case], fail=fail)
    body = request("x")
    result = PluginChain.from_directory(plugin_dir).on_request(body)
    assert result.trace[0].action == "error" and result.trace[0].kind == "error"
    assert result.rejected == (fail == "closed")
    assert result.request == body  # nothing of the hostile verdict got through
    # Whatever happened, the result can be sent to a client as UTF-8 JSON.
    json.dumps([result.message, result.request], ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "verdict",
    [
        "[" * 100_000,
        '{"action":"modify","text":"\\ud800"}',
        '{"action":"reject","status":451,"message":"\\udfff"}',
    ],
)
@pytest.mark.parametrize("fail", ["open", "closed"])
def test_hostile_response_verdict_goes_to_the_fail_strategy(
    plugin_dir: Path, verdict: str, fail: str
) -> None:
    fixed(plugin_dir, "hostile", verdict, fail=fail, hooks=["on_response"])
    result = PluginChain.from_directory(plugin_dir).on_response("fine text")
    assert result.trace[0].action == "error"
    assert result.rejected == (fail == "closed")
    assert result.text == "fine text"
    json.dumps([result.message, result.text], ensure_ascii=False).encode()


def test_modify_of_model_is_carried_in_the_result(plugin_dir: Path) -> None:
    new = {"messages": [{"role": "user", "content": "x"}], "model": "bigger-model"}
    fixed(plugin_dir, "upgrade", {"action": "modify", "request": new}, phase="authn")
    fixed(plugin_dir, "keep", {"action": "route", "target": "local_only"}, phase="route")
    result = PluginChain.from_directory(plugin_dir).on_request(request("x"))
    assert result.model == "bigger-model" and result.request["model"] == "bigger-model"
    assert result.route_target == "local_only"  # routing hints still merge as before
    untouched = PluginChain.empty().on_request(request("x"))
    assert untouched.model is None


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_modify_of_model_to_garbage_goes_to_the_fail_strategy(plugin_dir: Path, fail: str) -> None:
    new = {"messages": [{"role": "user", "content": "x"}], "model": "m" * 10_000}
    fixed(plugin_dir, "garbage", {"action": "modify", "request": new}, fail=fail)
    result = PluginChain.from_directory(plugin_dir).on_request(request("x"))
    assert result.trace[0].action == "error" and "model" in (result.trace[0].error or "")
    assert result.rejected == (fail == "closed")
    assert result.model is None and result.request["model"] == "smollm2"
