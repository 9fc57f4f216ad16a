"""Stop-string matching over streamed text (pure logic, no model)."""

from __future__ import annotations


class StopStringFilter:
    """Holds back just enough streamed text to cut output at the first stop string.

    ``feed`` returns the text that is safe to emit now; once a stop string is seen,
    ``stopped`` turns true and everything from the stop string on is dropped. Text that
    could still be the start of a stop string stays buffered until ``flush``.

        f = StopStringFilter(["\\n\\n"])
        f.feed("Hello\\n")   # -> "Hello"   ("\\n" is held back)
        f.feed("\\nmore")     # -> ""       and f.stopped is True
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what can be sent to the client now."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buf = self._held + text
        cut = min((i for i in (buf.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        keep = self._longest_partial_suffix(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """Return what is still held back (generation ended without a stop string)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial_suffix(self, buf: str) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best
