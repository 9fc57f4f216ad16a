"""Streamed answers: the hold-back window each plugin declares, and failures counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.plugins import PluginChain, PluginOutcome, PluginRejectedError, ResponseStream
from tests.plugins.conftest import SAMPLES, fixed, write_plugin

PII_TEXT = (
    "Sure. Write to bob.smith@example.com or call 555-123-4567 any time; "
    "the card on file is 4111 1111 1111 1111 and it expires soon. "
    "A longer card: 6011 0009 9013 9424 or 3530-1113-3330-0000. Thanks! "
) * 3


def _upper(directory: Path, name: str, window: int | None) -> None:
    fields = {} if window is None else {"stream_window_chars": window}
    fixed(directory, name, {"action": "continue"}, hooks=["on_response"], **fields)


def test_a_plugin_that_declares_no_window_sees_each_chunk_as_it_comes(plugin_dir: Path) -> None:
    _upper(plugin_dir, "quiet", None)
    chain = PluginChain.from_directory(plugin_dir)
    assert chain.stream_window == 0
    stream = ResponseStream(chain)
    assert stream.window == 0
    assert stream.feed("Hel") == "Hel"  # the first token goes out at once
    assert stream.feed("lo there") == "lo there"
    assert stream.close() == ""


def test_the_stream_holds_back_only_the_largest_declared_window(plugin_dir: Path) -> None:
    _upper(plugin_dir, "a", 8)
    _upper(plugin_dir, "b", 30)
    _upper(plugin_dir, "c", None)
    chain = PluginChain.from_directory(plugin_dir)
    assert chain.stream_window == 30 and ResponseStream(chain).window == 30


def test_request_only_plugins_do_not_hold_the_stream(plugin_dir: Path) -> None:
    fixed(plugin_dir, "req", {"action": "continue"}, stream_window_chars=500)
    chain = PluginChain.from_directory(plugin_dir)
    assert chain.stream_window == 0 and ResponseStream(chain).feed("x") == "x"


def test_pii_redact_declares_a_window_that_still_catches_split_pii() -> None:
    chain = PluginChain.from_directory(SAMPLES)
    assert 0 < chain.stream_window <= 128
    whole = chain.on_response(PII_TEXT).text
    assert "@" not in whole and "4111" not in whole and "9424" not in whole
    for size in (1, 2, 3, 5, 7, 11, 20):
        stream = ResponseStream(chain)
        chunks = [PII_TEXT[i : i + size] for i in range(0, len(PII_TEXT), size)]
        assert "".join(stream.feed(c) for c in chunks) + stream.close() == whole, size


def test_window_zero_still_applies_modify_and_reject(plugin_dir: Path) -> None:
    fixed(plugin_dir, "swap", {"action": "modify", "text": "[X]"}, hooks=["on_response"])
    assert ResponseStream(PluginChain.from_directory(plugin_dir)).feed("abc") == "[X]"
    fixed(
        plugin_dir,
        "deny",
        {"action": "reject", "status": 451, "message": "no"},
        hooks=["on_response"],
    )
    stream = ResponseStream(PluginChain.from_directory(plugin_dir))
    with pytest.raises(PluginRejectedError):
        stream.feed("abc")


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_streamed_failures_are_counted(plugin_dir: Path, fail: str) -> None:
    write_plugin(
        plugin_dir,
        "broken",
        SAMPLES / "tests" / "fixed_verdict.wasm",
        config={"verdict": "not json"},
        hooks=["on_response"],
        fail=fail,
    )
    counted: list[PluginOutcome] = []
    stream = ResponseStream(PluginChain.from_directory(plugin_dir), on_failure=counted.append)
    try:
        stream.feed("one ")
        stream.feed("two ")
        stream.close()
    except PluginRejectedError:
        assert fail == "closed"
    assert counted and all(o.plugin == "broken" and o.kind == "error" for o in counted)
    assert len(counted) == (2 if fail == "open" else 1)  # window 0: nothing held for close()


def test_streamed_failures_are_counted_in_telemetry_by_default(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.plugins.stream as stream_module

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(stream_module, "record_plugin_error", lambda p, k: seen.append((p, k)))
    write_plugin(
        plugin_dir,
        "slow",
        SAMPLES / "tests" / "spin.wasm",
        hooks=["on_request", "on_response"],
        timeout_ms=20,
        fail="open",
    )
    stream = ResponseStream(PluginChain.from_directory(plugin_dir))
    assert stream.feed("text ") == "text "
    assert seen == [("slow", "timeout")]
