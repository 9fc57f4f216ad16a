"""Running response plugins over streamed text without missing what spans two chunks.

The window is the look-ahead the plugins declare: each plugin's manifest says how many
characters of a streamed answer it must see ahead (``stream_window_chars``, its longest
match that may span a space), and the stream holds back the largest of those in the chain
(``PluginChain.stream_window``). With a window of 0 (no plugin declares one), each chunk is
run through the hooks on its own and sent at once: nothing is held, so the time to the first
token is that of the plugins' calls alone.

Strategy for a window > 0 (a sliding hold-back window):

* Each ``feed(chunk)`` appends the chunk to the *pending* text and runs the chain's
  on_response hooks over all of pending (``final = false``).
* If the plugins changed nothing in the last ``window`` characters, the (modified) text
  before them is released, cut back to the last whitespace so a word is never split; the
  tail stays pending and is shown to the plugins again with the next chunk.
* If a change reaches into that tail, it may be a premature match on a partial token
  (``a@b.co`` of ``a@b.com``, 12 digits of a card read as a phone number), so only the text
  before the first change is released and the rest is kept *unmodified* for the next call.
* ``close()`` runs the hooks once more with ``final = true`` and releases the rest.

So anything a plugin must see whole (an e-mail address, a card number) is caught as long as
it is shorter than ``window`` characters: while incomplete it sits inside the held tail.
Released text is never shown again. Plugins should be idempotent (running one on its own
output changes nothing; ``[EMAIL]`` is not an e-mail address) since modified text may be held
and fed again. Past ``4 × window`` characters without a place to cut, text is released anyway. The cost is latency of up to ``window`` characters, and one
chain call per chunk. Without on_response plugins chunks pass straight through.

A reject raises ``PluginRejectedError``: stop the stream and report its status and message
(the held text has not been sent). Every plugin failure on the way (whatever its ``fail``
setting) goes to ``on_failure``, which by default counts it in ``agl_plugin_errors_total``.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.plugins.chain import PluginChain, PluginOutcome, ResponseResult
from shared.plugins.errors import PluginRejectedError
from shared.telemetry import record_plugin_error

__all__ = ["ResponseStream", "count_failure"]

_MAX_HOLD_FACTOR = 4  # with no whitespace at all, release anyway past 4 windows


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[-1 - i] == b[-1 - i]:
        i += 1
    return i


def _cut_at_space(text: str, limit: int) -> int:
    """Just past the last whitespace before ``limit``, or 0 when there is none."""
    if limit <= 0:
        return 0
    space = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit), text.rfind("\t", 0, limit))
    return space + 1


def count_failure(outcome: PluginOutcome) -> None:
    """Count a failed plugin call in ``agl_plugin_errors_total`` (the default ``on_failure``)."""
    record_plugin_error(outcome.plugin, outcome.kind or "error")


class ResponseStream:
    """Feed streamed text through a chain's on_response hooks.

    stream = ResponseStream(chain)   # holds back chain.stream_window characters
    for chunk in tokens:
        send(stream.feed(chunk))   # may be "" while text is held back
    send(stream.close())
    """

    def __init__(
        self,
        chain: PluginChain,
        *,
        window: int | None = None,
        on_failure: Callable[[PluginOutcome], None] | None = count_failure,
    ) -> None:
        window = chain.stream_window if window is None else window
        if window < 0:
            raise ValueError("window must be 0 (no look-ahead) or more characters")
        self.chain = chain
        self.window = window
        """Characters held back: the chain's declared window unless one was given."""
        self.on_failure = on_failure
        self._pending = ""
        self._closed = False
        self.modified = False
        """True once any plugin changed the text."""

    def _report(self, result: ResponseResult) -> None:
        if self.on_failure is None:
            return
        for outcome in result.trace:
            if outcome.error is not None:
                self.on_failure(outcome)

    def _run(self, final: bool) -> str:
        result = self.chain.on_response(self._pending, final=final)
        self._report(result)
        if result.rejected:
            self._closed = True
            self._pending = ""
            raise PluginRejectedError(
                plugin=result.rejected_by or "?",
                status=result.status or 500,
                message=result.message or "",
            )
        self.modified = self.modified or result.modified
        return result.text

    def feed(self, chunk: str) -> str:
        """Add a chunk; return the text that is now safe to send (possibly empty)."""
        if self._closed:
            raise RuntimeError("feed() after close() or a rejection")
        if not self.chain.has_response_hooks:
            return chunk
        if self.window == 0:  # no look-ahead: this chunk alone, sent at once
            if not chunk:
                return ""
            self._pending = chunk
            text = self._run(final=False)
            self._pending = ""
            return text
        self._pending += chunk
        original = self._pending
        if len(original) <= self.window:
            return ""  # nothing could be released yet; skip the call
        text = self._run(final=False)
        if _common_suffix(original, text) < self.window:
            # A change reaches into the held tail: it may be a partial match ("a@b.co" of
            # "a@b.com"), so release only the untouched prefix and show the rest again.
            limit = min(_common_prefix(original, text), len(original) - self.window)
            cut = _cut_at_space(original, limit)
            if cut > 0 or len(original) < _MAX_HOLD_FACTOR * self.window:
                self._pending = original[cut:]
                return original[:cut]
        # Every change lies before the held tail: release up to the tail, cut at a space.
        cut = _cut_at_space(text, len(text) - self.window)
        if cut == 0:
            if len(text) < _MAX_HOLD_FACTOR * self.window:
                return ""  # one long word so far: keep holding it (as the original text)
            cut = len(text) - self.window  # no place to cut: stop holding
        self._pending = text[cut:]
        return text[:cut]

    def close(self) -> str:
        """End of the stream: run the hooks over what is held (``final = true``) and return it."""
        if self._closed:
            return ""
        self._closed = True
        if not self.chain.has_response_hooks or not self._pending:
            return self._pending
        text = self._run(final=True)
        self._pending = ""
        return text
