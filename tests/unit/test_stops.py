"""Stop strings over streamed pieces."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.runtimes.stops import StopStringFilter


def test_stop_split_across_pieces_is_cut_and_nothing_after_it_leaks() -> None:
    f = StopStringFilter(["END"])
    out = [f.feed(p) for p in ["hello E", "N", "D and more"]]
    assert "".join(out) == "hello "
    assert f.stopped
    assert f.feed("later") == "" and f.flush() == ""


def test_partial_match_that_fails_is_released() -> None:
    f = StopStringFilter(["END"])
    assert f.feed("EN") == ""
    assert f.feed("X") == "ENX"
    assert not f.stopped


def test_without_stops_text_passes_through() -> None:
    f = StopStringFilter([])
    assert f.feed("abc") == "abc" and f.flush() == ""


@given(st.text(alphabet="abE", max_size=30), st.lists(st.integers(1, 5), max_size=10))
def test_matches_cutting_the_whole_text_at_once(text: str, sizes: list[int]) -> None:
    f = StopStringFilter(["Eb", "aaa"])
    pieces, i = [], 0
    for size in [*sizes, len(text)]:
        pieces.append(text[i : i + size])
        i += size
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    cuts = [c for c in (text.find("Eb"), text.find("aaa")) if c >= 0]
    assert out == (text[: min(cuts)] if cuts else text)
