"""Streaming tool calls as they are generated (pure): the generic format's JSON, read a piece at
a time, becomes "a call starts" and "its arguments grew" events, as OpenAI streams them.

    scan = CallScanner()
    for text in pieces:
        for event in scan.feed(text):   # CallStart(index, name) | ArgsDelta(index, text)
            ...

Only the structure is followed here (strings, escapes, nesting): ``{"tool_calls": [{"name": …,
"arguments": {…}}, …]}``. A call starts once its name is complete; its arguments' text goes out
as it comes (held back until the name is known, when ``arguments`` comes first). Whether the
whole answer is a valid call is decided at the end by ``shared.tool_calls.parse_calls``; arguments
that are not an object or array (an upstream's JSON string) are not streamed, only parsed then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ArgsDelta", "CallScanner", "CallStart"]


@dataclass(frozen=True)
class CallStart:
    """Call ``index`` names ``name`` (its arguments follow as :class:`ArgsDelta` s)."""

    index: int
    name: str


@dataclass(frozen=True)
class ArgsDelta:
    """More text of call ``index``'s arguments (JSON)."""

    index: int
    text: str


_CALL_DEPTH = 3  # the root object, the tool_calls array, a call object


@dataclass
class CallScanner:
    """Follows the JSON of a call answer piece by piece (see the module doc)."""

    _stack: list[str] = field(default_factory=list)
    _in_string: bool = False
    _escaped: bool = False
    _want_key: bool = False
    _key: str | None = None  # the call object's current key
    _text: str | None = None  # a string being captured (a call key or the name)
    _capturing: str = ""  # "key" or "name"
    _index: int = -1
    _name: str | None = None
    _args: str | None = None  # arguments text while inside them
    _held: str = ""  # arguments text seen before the name
    started: list[str] = field(default_factory=list)
    """The names of the calls started so far, by index."""

    def feed(self, text: str) -> list[CallStart | ArgsDelta]:
        """The events ``text`` adds (deltas of one call merged)."""
        out: list[CallStart | ArgsDelta] = []
        for ch in text:
            self._char(ch, out)
        if self._args is not None and self._args:
            self._emit_args(self._args, out)
            self._args = ""
        merged: list[CallStart | ArgsDelta] = []
        for event in out:
            last = merged[-1] if merged else None
            if isinstance(event, ArgsDelta) and isinstance(last, ArgsDelta):
                merged[-1] = ArgsDelta(event.index, last.text + event.text)
            else:
                merged.append(event)
        return merged

    def _emit_args(self, text: str, out: list[CallStart | ArgsDelta]) -> None:
        if self._name is None:
            self._held += text
        else:
            out.append(ArgsDelta(self._index, text))

    def _char(self, ch: str, out: list[CallStart | ArgsDelta]) -> None:
        if self._args is not None:
            self._args += ch
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self._in_string = False
                self._string_done(out)
                return
            if self._text is not None:
                self._text += ch
            return
        depth = len(self._stack)
        if ch == '"':
            self._in_string = True
            at_call = depth == _CALL_DEPTH and self._args is None
            if at_call and self._want_key:
                self._text, self._capturing = "", "key"
            elif at_call and self._key == "name" and self._name is None:
                self._text, self._capturing = "", "name"
        elif ch in "{[":
            at_call = depth == _CALL_DEPTH and not self._want_key
            if at_call and self._key == "arguments" and self._args is None:
                self._args = ch
            if depth == _CALL_DEPTH - 1 and ch == "{" and self._stack[-1] == "[":
                self._index += 1
                self._name, self._held, self._key = None, "", None
            self._stack.append(ch)
            self._want_key = ch == "{"
        elif ch in "}]":
            if self._stack:
                self._stack.pop()
            if self._args is not None and len(self._stack) == _CALL_DEPTH:
                self._emit_args(self._args, out)
                self._args = None
        elif ch == ":":
            self._want_key = False
        elif ch == "," and self._stack and self._stack[-1] == "{":
            self._want_key = True

    def _string_done(self, out: list[CallStart | ArgsDelta]) -> None:
        text, self._text = self._text, None
        if text is None:
            return
        if self._capturing == "key":
            self._key = text
        elif self._capturing == "name":
            self._name = text
            self.started.append(text)
            out.append(CallStart(self._index, text))
            if self._held:
                out.append(ArgsDelta(self._index, self._held))
                self._held = ""
