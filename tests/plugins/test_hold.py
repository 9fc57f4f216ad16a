"""The hold hint: a plugin says how much of a streamed answer's tail may still be a match.

Plain text leaves at once, PII split anywhere is still redacted, bad hints go to the
plugin's ``fail`` strategy, and a plugin that gives no hint keeps its whole window.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.plugins import (
    PluginChain,
    PluginOutcome,
    PluginOutputError,
    PluginRejectedError,
    ResponseStream,
)
from shared.plugins.verdicts import parse_verdict
from tests.plugins.conftest import SAMPLES, fixed


def _stream_out(chain: PluginChain, chunks: list[str]) -> str:
    stream = ResponseStream(chain)
    return "".join(stream.feed(c) for c in chunks) + stream.close()


@pytest.fixture(scope="module")
def samples() -> PluginChain:
    return PluginChain.from_directory(SAMPLES)


# --- verdicts -------------------------------------------------------------------------------


def test_a_hold_hint_parses_with_continue_and_modify() -> None:
    got = parse_verdict(b'{"action":"continue","hold":3}', hook="on_response", max_hold=8)
    assert (got.action, got.hold) == ("continue", 3)
    got = parse_verdict(b'{"action":"modify","text":"x","hold":0}', hook="on_response", max_hold=8)
    assert (got.text, got.hold) == ("x", 0)
    assert parse_verdict(b'{"action":"continue"}', hook="on_response", max_hold=8).hold is None


@pytest.mark.parametrize("hold", ["-1", "9", '"3"', "2.5", "true", "null", "[1]"])
def test_a_bad_hold_hint_is_refused(hold: str) -> None:
    raw = b'{"action":"continue","hold":' + hold.encode() + b"}"
    with pytest.raises(PluginOutputError, match="hold"):
        parse_verdict(raw, hook="on_response", plugin="p", max_hold=8)


# --- the host -------------------------------------------------------------------------------


def test_with_a_zero_hint_text_leaves_as_it_arrives(plugin_dir: Path) -> None:
    fixed(plugin_dir, "hinted", {"action": "continue", "hold": 0}, hooks=["on_response"],
          stream_window_chars=24)  # fmt: skip
    stream = ResponseStream(PluginChain.from_directory(plugin_dir))
    assert stream.feed("T") == "T"  # the first token goes out at once, mid-word
    assert stream.feed("he capi") == "he capi"
    assert stream.close() == ""


def test_the_host_holds_exactly_the_hint(plugin_dir: Path) -> None:
    fixed(plugin_dir, "hinted", {"action": "continue", "hold": 3}, hooks=["on_response"],
          stream_window_chars=24)  # fmt: skip
    stream = ResponseStream(PluginChain.from_directory(plugin_dir))
    assert stream.feed("ab") == ""
    assert stream.feed("cdefg") == "abcd"  # no word boundary needed with a hint
    assert stream.feed("h") == "e"
    assert stream.close() == "fgh"  # final: nothing held


def test_a_plugin_without_hints_keeps_holding_its_window(plugin_dir: Path) -> None:
    fixed(plugin_dir, "legacy", {"action": "continue"}, hooks=["on_response"],
          stream_window_chars=8)  # fmt: skip
    fixed(plugin_dir, "hinted", {"action": "continue", "hold": 0}, hooks=["on_response"],
          stream_window_chars=24)  # fmt: skip
    stream = ResponseStream(PluginChain.from_directory(plugin_dir))
    assert stream.feed("one two") == ""  # shorter than the legacy window
    # 8 characters held and never a cut inside a word: the pre-hint contract.
    assert stream.feed(" three four five") == "one two three "
    assert stream.close() == "four five"


def test_the_largest_hold_of_the_chain_wins(plugin_dir: Path) -> None:
    fixed(plugin_dir, "a", {"action": "continue", "hold": 2}, hooks=["on_response"],
          stream_window_chars=4)  # fmt: skip
    fixed(plugin_dir, "b", {"action": "continue", "hold": 5}, hooks=["on_response"],
          stream_window_chars=6)  # fmt: skip
    chain = PluginChain.from_directory(plugin_dir)
    assert chain.on_response("abcdefgh", final=False).hold == 5
    assert chain.on_response("abcdefgh", final=True).hold == 0
    assert ResponseStream(chain).feed("abcdefgh") == "abc"


def test_a_later_change_inside_an_earlier_hold_keeps_it_held(plugin_dir: Path) -> None:
    # on_response runs in reverse order: "late" (phase stats) first, then "early" (authn).
    fixed(plugin_dir, "late", {"action": "continue", "hold": 2}, hooks=["on_response"],
          phase="stats", stream_window_chars=4)  # fmt: skip
    fixed(plugin_dir, "early", {"action": "modify", "text": "abcdeX", "hold": 0},
          hooks=["on_response"], phase="authn", stream_window_chars=4)  # fmt: skip
    result = PluginChain.from_directory(plugin_dir).on_response("abcdef", final=False)
    assert (result.text, result.hold) == ("abcdeX", 2)  # the held "ef" is now "eX"


@pytest.mark.parametrize("hint", [-1, 25, "3", 2.5, True])
@pytest.mark.parametrize("fail", ["open", "closed"])
def test_a_bad_hint_goes_to_the_fail_strategy_and_is_counted(
    plugin_dir: Path, hint: object, fail: str
) -> None:
    fixed(plugin_dir, "liar", {"action": "continue", "hold": hint}, hooks=["on_response"],
          stream_window_chars=24, fail=fail)  # fmt: skip
    counted: list[PluginOutcome] = []
    stream = ResponseStream(PluginChain.from_directory(plugin_dir), on_failure=counted.append)
    if fail == "closed":
        with pytest.raises(PluginRejectedError) as info:
            stream.feed("some text ")
        assert info.value.status == 503 and info.value.plugin == "liar"
    else:
        # ignored, and treated like a plugin without a hint: its whole window is held
        out = stream.feed("some text that is long enough to release")
        assert out == "some text that "
        out += stream.close()
        assert out == "some text that is long enough to release"
    assert counted and all(o.plugin == "liar" and o.kind == "error" for o in counted)
    assert "hold" in (counted[0].error or "")


# --- pii_redact -----------------------------------------------------------------------------

PROSE = [
    "Paris is the capital of France. ",
    "It has about 2 million people; ",
    "the metro area, ",
    "more than 12 million! ",
    "Visit in May (or June).\n",
]


def test_pii_redact_releases_plain_prose_as_it_arrives(samples: PluginChain) -> None:
    stream = ResponseStream(samples)
    for chunk in PROSE:
        assert stream.feed(chunk) == chunk  # nothing held: no chunk can start a match
    assert stream.close() == ""


def test_pii_redact_holds_only_the_word_that_could_precede_an_at(samples: PluginChain) -> None:
    stream = ResponseStream(samples)
    assert stream.feed("The") == ""  # "The@example.com" is still possible
    assert stream.feed(" capital") == "The "
    assert stream.feed(" of France.") == "capital of "
    assert stream.feed(" Next") == "France. "
    assert stream.close() == "Next"


def test_pii_redact_hint_stays_within_its_window(samples: PluginChain) -> None:
    (window,) = {p.manifest.stream_window_chars for p in samples.plugins if p.name == "pii_redact"}
    for text in ("x" * 500, "1 " * 300, "a@" + "b" * 300, "4111 1111 1111 1111 " * 20):
        result = samples.on_response(text, final=False)
        assert not result.trace[0].error
        assert 0 <= result.hold <= window


CARD_TEXT = "Sure, the card on file is 4111 1111 1111 1111 and it expires soon."
PHONE_TEXT = "Call +1 (555) 123-4567, or 3530-1113-3330-0000."
EMAIL_TEXT = "Write to bob.smith@example.com. Or jane_doe+x@mail.example.org!"
NOT_PII = "Order 4111 1111 1111 1112 and id abc1234567890x are fine."


@pytest.mark.parametrize("text", [CARD_TEXT, PHONE_TEXT, EMAIL_TEXT, NOT_PII])
def test_pii_split_at_every_position_is_still_redacted(samples: PluginChain, text: str) -> None:
    whole = samples.on_response(text).text
    assert whole != text or text is NOT_PII
    for i in range(len(text) + 1):
        assert _stream_out(samples, [text[:i], text[i:]]) == whole, i
        for j in range(i, len(text) + 1, 3):
            assert _stream_out(samples, [text[:i], text[i:j], text[j:]]) == whole, (i, j)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 11])
def test_pii_split_into_tokens_is_still_redacted(samples: PluginChain, size: int) -> None:
    text = " ".join([CARD_TEXT, PHONE_TEXT, EMAIL_TEXT, NOT_PII]) * 2
    whole = samples.on_response(text).text
    assert "@" not in whole and "4111 1111 1111 1111" not in whole
    assert _stream_out(samples, [text[i : i + size] for i in range(0, len(text), size)]) == whole


def test_pii_released_text_never_holds_part_of_a_match(samples: PluginChain) -> None:
    stream = ResponseStream(samples)
    sent = stream.feed("mail bob")
    sent += stream.feed(".smith@exa")
    sent += stream.feed("mple.co")
    assert "bob" not in sent and "smith" not in sent and "exa" not in sent
    sent += stream.feed("m now")
    assert sent == "mail [EMAIL] "
    sent = stream.feed(" card 4111 ")
    sent += stream.feed("1111 1111")
    assert sent == "now card "  # the card so far is held
    assert sent + stream.feed(" 1111.") + stream.close() == "now card [CARD]."


def test_pii_streamed_in_random_pieces_matches_the_whole_answer() -> None:
    """Seeded fuzz: whatever the chunking, streaming redacts what redacting the whole does
    (as long as no run of address or number characters outgrows the window: see ABI.md)."""
    import random

    chain = PluginChain.from_directory(SAMPLES)
    window = chain.stream_window
    parts = ["bob.smith@example.com", "a@b.io", "x@y.c", "4111 1111 1111 1111", "(555)",
             "4111-1111-1111-1111", "+1 (555) 123-4567", "555.123.4567", "6011 0009 9013 9424",
             "abc123", "2024", " ", " ", ". ", ", ", "\n", "the", "(", ")", "-", "@", ".", "12",
             "x1", "é", "日本", "+"]  # fmt: skip
    rng = random.Random(7)
    checked = 0
    for _ in range(1500):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(1, 6))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        stream = ResponseStream(chain)
        out, capped = "", False
        for chunk in chunks:
            out += stream.feed(chunk)
            capped = capped or chain.on_response(stream._pending, final=False).hold >= window
        out += stream.close()
        if not capped:
            checked += 1
            assert out == chain.on_response(text).text, (text, chunks)
    assert checked > 1000
