"""Running response plugins over streamed text without missing what spans two chunks.

Each plugin's manifest declares how far it may need to see ahead (``stream_window_chars``,
its longest match that may still be growing at the end of the text), and on each streamed
call it may say how much it needs *now*: the ``hold`` hint of its verdict, the number of
trailing characters of its output that might be the beginning of a match (``"The"`` could
become ``"The@example.com"``; ``"4111 1111"`` could become a card number). The host holds
back the largest hold of the chain (``ResponseResult.hold``), each hint capped by that
plugin's window; a plugin that gives no hint holds its whole window, as before hints existed.

* Window 0 (``PluginChain.stream_window``: no plugin declares one, or ``window=0``): each
  chunk is run through the hooks on its own and sent at once; hints are ignored.
* Otherwise each ``feed(chunk)`` appends the chunk to the *pending* text and runs the chain's
  on_response hooks over all of pending (``final = false``). Everything but the held tail
  is released, and the tail stays pending, shown to the plugins again with the next chunk.
  With hints only, the cut may fall anywhere (the plugins said what they need). When some
  plugin with a window gave no hint, the cut is moved back to the last whitespace as well,
  so such a plugin still never sees a word split: the contract it was written against.
* If a change reaches into the held tail, it may be a premature match on a partial token
  (``a@b.co`` of ``a@b.com``), so only the text before the first change is released and the
  rest is kept *unmodified* for the next call.
* ``close()`` runs the hooks once more with ``final = true`` and releases the rest: nothing is
  held at the end.

Released text is never shown again. Plugins should be idempotent (running one on its own
output changes nothing; ``[EMAIL]`` is not an e-mail address) since modified text may be held
and fed again. Past ``4 × window`` characters without a place to cut, text is released
anyway. Without on_response plugins chunks pass straight through.

A reject raises ``PluginRejectedError``: stop the stream and report its status and message
(the held text has not been sent). Every plugin failure on the way (whatever its ``fail``
setting; a bad hold hint is one) goes to ``on_failure``, which by default counts it in
``agl_plugin_errors_total``; a plugin that failed open holds its whole window.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.plugins.chain import (
    PluginChain,
    PluginOutcome,
    ResponseResult,
    common_prefix,
    common_suffix,
)
from shared.plugins.errors import PluginRejectedError
from shared.telemetry import record_plugin_error

__all__ = ["ResponseStream", "count_failure"]

_MAX_HOLD_FACTOR = 4  # with no whitespace at all, release anyway past 4 windows


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

    stream = ResponseStream(chain)   # holds back what the plugins ask for
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
        if window is not None and window < 0:
            raise ValueError("window must be 0 (no look-ahead) or more characters")
        self.chain = chain
        self.window = chain.stream_window if window is None else window
        """The most held for a plugin without a hint: the chain's largest declared window,
        unless one was given (then every plugin without a hint holds that; 0: no look-ahead)."""
        self._unhinted = window
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

    def _run(self, final: bool) -> ResponseResult:
        result = self.chain.on_response(self._pending, final=final, unhinted=self._unhinted)
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
        return result

    def feed(self, chunk: str) -> str:
        """Add a chunk; return the text that is now safe to send (possibly empty)."""
        if self._closed:
            raise RuntimeError("feed() after close() or a rejection")
        if not self.chain.has_response_hooks:
            return chunk
        if not chunk:
            return ""
        if self.window == 0:  # no look-ahead: this chunk alone, sent at once
            self._pending = chunk
            text = self._run(final=False).text
            self._pending = ""
            return text
        self._pending += chunk
        original = self._pending
        result = self._run(final=False)
        text, hold, words = result.text, result.hold, result.whole_words
        most = _MAX_HOLD_FACTOR * max(self.window, 1)
        if common_suffix(original, text) < hold:
            # A change reaches into the held tail: it may be a partial match ("a@b.co" of
            # "a@b.com"), so release only the untouched prefix and show the rest again.
            limit = min(common_prefix(original, text), len(text) - hold)
            cut = _cut_at_space(original, limit) if words else max(limit, 0)
            if cut > 0 or len(original) < most:
                self._pending = original[cut:]
                return original[:cut]
            hold = min(hold, self.window)  # no place to cut for too long: stop holding
        # Every change lies before the held tail: release up to the tail.
        limit = len(text) - hold
        cut = _cut_at_space(text, limit) if words else max(limit, 0)
        if cut == 0:
            if limit <= 0 or len(text) < most:
                return ""  # all of it may still be a match: keep holding (the original text)
            cut = limit  # one long word: stop holding it
        self._pending = text[cut:]
        return text[:cut]

    def close(self) -> str:
        """End of the stream: run the hooks over what is held (``final = true``) and return it."""
        if self._closed:
            return ""
        self._closed = True
        if not self.chain.has_response_hooks or not self._pending:
            return self._pending
        text = self._run(final=True).text
        self._pending = ""
        return text
