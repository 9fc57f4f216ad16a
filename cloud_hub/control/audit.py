"""The audit trail: every desired-state change and rollout step, in JetStream (NATS I/O).

    await audit(js, "policy.set", target="site.berlin", revision="3f2a…", detail="+router.rules")
    events = await read_audit(js, last=50)

Stream ``AGL_AUDIT`` on ``agl.v1.audit.<event>`` (file storage, at most 100 000 entries, old
ones dropped first). ``hubctl audit`` prints it.
"""

from __future__ import annotations

import getpass
import json
import time
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

__all__ = ["AUDIT_STREAM", "audit", "read_audit"]

AUDIT_STREAM = "AGL_AUDIT"
AUDIT_SUBJECT = "agl.v1.audit"
MAX_ENTRIES = 100_000


async def _ensure(js: JetStreamContext) -> None:
    try:
        await js.stream_info(AUDIT_STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=AUDIT_STREAM,
                subjects=[f"{AUDIT_SUBJECT}.>"],
                storage=StorageType.FILE,
                max_msgs=MAX_ENTRIES,
                discard=DiscardPolicy.OLD,
                allow_direct=True,
            )
        )


async def audit(js: JetStreamContext, event: str, **fields: Any) -> None:
    """Append one entry (``event`` like ``policy.set``, ``rollout.wave``)."""
    await _ensure(js)
    entry = {"at": time.time(), "event": event, "by": _actor(), **fields}
    await js.publish(f"{AUDIT_SUBJECT}.{event}", json.dumps(entry, default=str).encode())


def _actor() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


async def read_audit(js: JetStreamContext, *, last: int = 50) -> list[dict[str, Any]]:
    """The newest ``last`` entries, oldest first."""
    try:
        info = await js.stream_info(AUDIT_STREAM)
    except nats.js.errors.NotFoundError:
        return []
    first, end = info.state.first_seq, info.state.last_seq
    out = []
    for seq in range(max(first, end - last + 1), end + 1):
        try:
            msg = await js.get_msg(AUDIT_STREAM, seq)
        except nats.js.errors.NotFoundError:
            continue
        out.append(json.loads(msg.data or b"{}"))
    return out
