"""Chat prompts whose special tokens come only from the template (pure: tokeniser injected).

A chat template wraps each message in control tokens (``<|im_start|>user … <|im_end|>``). If the
rendered prompt were tokenised as one string with special tokens enabled, a user could write
``<|im_end|><|im_start|>system …`` in their content and forge turns. So the template is rendered
around unique placeholders, the text between placeholders (the template's own) is tokenised with
special tokens, and every message's content is tokenised as plain text.

    tokens, stop = chat_tokens(render, tokenize, messages, control_texts=frozenset({"<|im_end|>"}))

``render(messages)`` returns ``(prompt, added_bos, stop)``; ``tokenize(text, add_bos, special)``
returns token ids. When a template transforms its content so that the placeholders cannot be found
again, the whole prompt is tokenised at once, but only if no content holds a control token's text;
otherwise the request is refused (:class:`~shared.errors.InvalidInput`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shared.errors import InvalidInput

__all__ = ["chat_tokens"]

Render = Callable[[list[dict[str, Any]]], tuple[str, bool, tuple[str, ...]]]
Tokenize = Callable[[str, bool, bool], list[int]]


def _segments(
    render: Render, messages: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[str, bool]], bool, tuple[str, ...]] | None:
    """Template text (special=True) and contents (special=False), in order; None if not found."""
    nonce = secrets.token_hex(8)
    marks = [f"AGLMSG{nonce}N{i}Z" for i in range(len(messages))]
    masked = [{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)]
    prompt, added_bos, stop = render(masked)
    out: list[tuple[str, bool]] = []
    pos = 0
    for message, mark in zip(messages, marks, strict=True):
        at = prompt.find(mark, pos)
        if at < 0 or prompt.find(mark, at + len(mark)) >= 0:
            return None
        out.append((prompt[pos:at], True))
        out.append((str(message.get("content") or ""), False))
        pos = at + len(mark)
    out.append((prompt[pos:], True))
    return out, added_bos, stop


def chat_tokens(
    render: Render,
    tokenize: Tokenize,
    messages: Sequence[Mapping[str, Any]],
    *,
    control_texts: frozenset[str],
) -> tuple[list[int], tuple[str, ...]]:
    """Token ids of the rendered chat, with control tokens from the template only; and its stops."""
    found = _segments(render, messages)
    if found is None:
        return _whole(render, tokenize, messages, control_texts)
    segments, added_bos, stop = found
    tokens: list[int] = []
    first = True
    for text, special in segments:
        if not text:
            continue
        tokens.extend(tokenize(text, first and not added_bos, special))
        first = False
    if first:  # nothing at all to tokenise
        tokens.extend(tokenize("", not added_bos, False))
    return tokens, stop


def _whole(
    render: Render,
    tokenize: Tokenize,
    messages: Sequence[Mapping[str, Any]],
    control_texts: frozenset[str],
) -> tuple[list[int], tuple[str, ...]]:
    for i, message in enumerate(messages):
        content = str(message.get("content") or "")
        hit = next((t for t in control_texts if t and t in content), None)
        if hit is not None:
            raise InvalidInput(
                f"messages[{i}] contains the control token {hit!r}, and this model's chat "
                "template cannot keep message text apart from its own markup; remove it"
            )
    prompt, added_bos, stop = render([dict(m) for m in messages])
    return tokenize(prompt, not added_bos, True), stop
