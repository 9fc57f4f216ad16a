"""Plain-text tables and times for ``hubctl`` output (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cloud_hub.control.fleet import DeviceEntry, liveness

_HEADS = {"tok_s": "TOK/S", "last_seen": "LAST SEEN"}


def ago(at: float | None, now: float) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``, or ``never``."""
    if at is None:
        return "never"
    seconds = max(now - at, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def device_row(entry: DeviceEntry, *, now: float) -> dict[str, Any]:
    """One device as a row of ``hubctl devices list`` (also its ``--json`` object)."""
    beat = entry.heartbeat
    state = "revoked" if entry.revoked_at else liveness(entry, now=now)
    return {
        "device": entry.device,
        "state": state,
        "site": entry.site or "-",
        "last_seen": ago(entry.last_seen, now),
        "version": beat.agent_version if beat else "-",
        "models": len(beat.models) if beat else 0,
        "queue": beat.queue_depth if beat else 0,
        "tok_s": round(beat.tok_s, 1) if beat else 0.0,
        "escalated": f"{beat.escalation_share:.0%}" if beat else "-",
        "breaker": beat.breaker if beat else "-",
        "labels": ",".join(f"{k}={v}" for k, v in entry.labels.items()) or "-",
    }


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Left-aligned columns with an upper-case header line."""
    cols = list(columns or rows[0].keys())
    cells = [[str(row.get(c, "")) for c in cols] for row in rows]
    heads = [_HEADS.get(c, c.upper().replace("_", " ")) for c in cols]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
