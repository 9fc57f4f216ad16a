"""Send one simulated request through a device and write what happened into its ledger entry.

The answer is read the way a client reads it: the ``x-agl-tier``/``x-agl-reason`` headers, the
JSON body or the SSE events. Every complete answer counts (``answers``), and the text must be
exactly what its tier produces, so a splice of two answers cannot pass as one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from openautoglm.sim.device import AsgiAnswer, SimDevice
from openautoglm.sim.scenario import Scenario
from openautoglm.sim.traffic import SimRequest, answer_text_ok
from shared.fleet_report.ledger import Ledger, LedgerEntry

__all__ = ["read_answer", "send_request"]

_PATH = "/v1/chat/completions"


async def send_request(
    device: SimDevice, req: SimRequest, entry: LedgerEntry, ledger: Ledger, scenario: Scenario
) -> None:
    """POST ``req`` to ``device`` and fill ``entry``; gives up at twice the deadline."""
    entry.bytes_sent = len(json.dumps(req.body))
    try:
        async with asyncio.timeout(2 * scenario.traffic.deadline_s):
            answer = await device.post(_PATH, req.body)
    except TimeoutError:
        entry.error = f"no answer within twice the deadline ({2 * scenario.traffic.deadline_s:g} s)"
        return
    except Exception as exc:  # the app raised: record it, the run goes on
        entry.answered_at = ledger.now()
        entry.status = 599
        entry.error = f"the app raised {type(exc).__name__}: {exc}"
        return
    entry.answered_at = ledger.now()
    read_answer(answer, entry, ledger, words=req.words, max_tokens=scenario.traffic.max_tokens)


def read_answer(
    answer: AsgiAnswer, entry: LedgerEntry, ledger: Ledger, *, words: int, max_tokens: int
) -> None:
    """Fill ``entry`` from an app's answer (status, tier, reason, text check, tokens, TTFT)."""
    entry.status = answer.status
    entry.tier = answer.headers.get("x-agl-tier")
    entry.reason = answer.headers.get("x-agl-reason")
    entry.bytes_received = len(answer.body)
    if answer.chunks:
        entry.ttft_s = answer.chunks[0][0] - ledger.t0 - entry.sent_at
    if answer.status != 200:
        entry.error = _error_text(answer.body)
        return
    if entry.stream:
        text, finals, usage, error = _read_sse(answer)
        if error is not None:
            entry.status, entry.error = 502, error
            return
    else:
        body = json.loads(answer.body)
        text = body["choices"][0]["message"]["content"] or ""
        finals, usage = 1, body.get("usage") or {}
    entry.answers = finals
    entry.completion_tokens = int(usage.get("completion_tokens") or 0)
    entry.text_ok = answer_text_ok(text, tier=entry.tier or "", words=words, max_tokens=max_tokens)
    if not entry.text_ok:
        entry.error = f"unexpected {entry.tier} text: {text[:80]!r}"


def _read_sse(answer: AsgiAnswer) -> tuple[str, int, dict[str, Any], str | None]:
    """Text, number of final chunks, usage, and an error event's message (SSE)."""
    text: list[str] = []
    finals = 0
    usage: dict[str, Any] = {}
    first_content_at: float | None = None
    for at, chunk in answer.chunks:
        for line in chunk.decode().splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                return "", finals, usage, str(event["error"].get("message"))
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    text.append(piece)
                    first_content_at = first_content_at or at
                if choice.get("finish_reason"):
                    finals += 1
    return "".join(text), finals, usage, None


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")
